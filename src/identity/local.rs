//! Who is asking on the local unix socket (`listen.unix`): the kernel says
//! (`SO_PEERCRED`: uid, gid and pid of the connecting process), the passwd
//! database names the uid, the group database lists its groups, and
//! `auth.local` maps both to policy groups.
//!
//! This is what replaces membership in the `docker` group: a local user
//! reaches the engine only through moat's policy and audit, under its own
//! name, and nothing it sends (headers, tokens) can change who it is.

use std::collections::BTreeSet;
use std::ffi::CString;

use nix::unistd::{getgrouplist, Gid, Group, Uid, User};

use super::name::{GroupName, NameError, UserName};
use crate::config::LocalAuth;

/// The kernel's word on the process at the other end of a unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    /// Absent where the kernel does not say.
    pub pid: Option<i32>,
}

/// A local client, resolved once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPeer {
    pub cred: PeerCred,
    /// From the passwd database, or `uid:N` when the uid has no entry.
    pub user: UserName,
    /// The policy groups `auth.local` gives it (sorted, each once).
    pub groups: Vec<GroupName>,
}

/// Why a local peer cannot be resolved: moat refuses the connection's
/// requests with 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    #[error("local user name {0}")]
    Name(NameError),
    #[error("the user and group databases cannot be read for uid {uid}: {reason}")]
    Lookup { uid: u32, reason: String },
}

/// `auth.local`, checked: every policy group follows the naming rule.
#[derive(Debug, Clone)]
pub struct LocalMap {
    users: Vec<(String, Vec<GroupName>)>,
    groups: Vec<(String, Vec<GroupName>)>,
}

impl LocalMap {
    /// Checks `cfg`; `root` maps to `admin` unless `cfg.users` names it.
    pub fn new(cfg: &LocalAuth) -> Result<LocalMap, NameError> {
        let parse = |key: &str, list: &[String]| -> Result<Vec<GroupName>, NameError> {
            list.iter()
                .map(|g| {
                    GroupName::parse(g)
                        .map_err(|why| NameError::new(format!("auth.local.{key} group"), g, why))
                })
                .collect()
        };
        let mut users = Vec::new();
        if !cfg.users.contains_key("root") {
            users.push(("root".to_owned(), parse("users", &["admin".to_owned()])?));
        }
        for (name, list) in &cfg.users {
            users.push((name.clone(), parse("users", list)?));
        }
        let groups = cfg
            .groups
            .iter()
            .map(|(name, list)| Ok((name.clone(), parse("groups", list)?)))
            .collect::<Result<_, NameError>>()?;
        Ok(LocalMap { users, groups })
    }

    /// The policy groups of a user with these local groups.
    fn policy_groups(&self, user: &str, local_groups: &[String]) -> Vec<GroupName> {
        let mut out = BTreeSet::new();
        for (name, list) in &self.users {
            if name == user {
                out.extend(list.iter().cloned());
            }
        }
        for (name, list) in &self.groups {
            if local_groups.iter().any(|g| g == name) {
                out.extend(list.iter().cloned());
            }
        }
        out.into_iter().collect()
    }

    /// Resolves the peer through the passwd and group databases.
    pub fn resolve(&self, cred: PeerCred) -> Result<LocalPeer, LocalError> {
        let lookup = |e: nix::Error| LocalError::Lookup {
            uid: cred.uid,
            reason: e.to_string(),
        };
        let account = User::from_uid(Uid::from_raw(cred.uid)).map_err(lookup)?;
        let (name, local_groups) = match account {
            Some(u) => {
                let mut gids = vec![Gid::from_raw(cred.gid)];
                if let Ok(c) = CString::new(u.name.clone()) {
                    gids = getgrouplist(&c, u.gid).map_err(lookup)?;
                    gids.push(Gid::from_raw(cred.gid));
                }
                let mut names = Vec::new();
                for gid in gids {
                    if let Some(g) = Group::from_gid(gid).map_err(lookup)? {
                        names.push(g.name);
                    }
                }
                (u.name, names)
            }
            None => (format!("uid:{}", cred.uid), Vec::new()),
        };
        let user = UserName::parse(&name).map_err(|why| {
            LocalError::Name(NameError::new("from the passwd database", &name, why))
        })?;
        let groups = self.policy_groups(user.as_str(), &local_groups);
        Ok(LocalPeer { cred, user, groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn map(users: &[(&str, &[&str])], groups: &[(&str, &[&str])]) -> LocalMap {
        let conv = |v: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
            v.iter()
                .map(|(k, l)| (k.to_string(), l.iter().map(|s| s.to_string()).collect()))
                .collect()
        };
        LocalMap::new(&LocalAuth {
            users: conv(users),
            groups: conv(groups),
        })
        .unwrap()
    }

    fn names(v: Vec<GroupName>) -> Vec<String> {
        v.into_iter().map(GroupName::into_string).collect()
    }

    #[test]
    fn root_is_admin_and_everyone_else_nothing_by_default() {
        let m = map(&[], &[]);
        assert_eq!(names(m.policy_groups("root", &[])), ["admin"]);
        assert!(m.policy_groups("alice", &["users".into()]).is_empty());
    }

    #[test]
    fn users_and_groups_add_up_and_root_can_be_remapped() {
        let m = map(
            &[("alice", &["viewer"]), ("root", &[])],
            &[("devs", &["developer"]), ("ops", &["viewer"])],
        );
        assert_eq!(
            names(m.policy_groups("alice", &["devs".into(), "ops".into()])),
            ["developer", "viewer"]
        );
        assert!(m.policy_groups("root", &["root".into()]).is_empty());
    }

    #[test]
    fn a_policy_group_that_is_not_a_name_is_refused_at_load() {
        let err = LocalMap::new(&LocalAuth {
            users: BTreeMap::from([("alice".into(), vec!["dev\nadmin".into()])]),
            groups: BTreeMap::new(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("auth.local.users group"), "{err}");
    }

    #[test]
    fn resolves_root_through_the_passwd_database() {
        let m = map(&[], &[]);
        let peer = m
            .resolve(PeerCred {
                uid: 0,
                gid: 0,
                pid: Some(1),
            })
            .unwrap();
        assert_eq!(peer.user.as_str(), "root");
        assert_eq!(names(peer.groups), ["admin"]);
    }

    #[test]
    fn a_uid_without_an_account_is_named_by_number() {
        let m = map(&[("uid:4000000000", &["viewer"])], &[]);
        let peer = m
            .resolve(PeerCred {
                uid: 4_000_000_000,
                gid: 4_000_000_000,
                pid: None,
            })
            .unwrap();
        assert_eq!(peer.user.as_str(), "uid:4000000000");
        assert_eq!(names(peer.groups), ["viewer"]);
    }
}
