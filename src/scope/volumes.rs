//! Named volumes a container create mounts and that do not exist yet: moat
//! creates them first, labelled with the caller's owner labels, so that
//! the engine does not create them unlabelled (an object nobody but an
//! admin could then use).
//!
//! The volume is created as the container create would have created it:
//! with the driver, driver options and labels of the `HostConfig.Mounts`
//! entry that names it, or `HostConfig.VolumeDriver` for a `Binds` entry.
//! If the volume appeared between the lookup and this create and is not
//! the caller's, the engine answers with the existing volume and moat
//! refuses the container create (409).

use http::Method;
use serde_json::{json, Map, Value};

use crate::forward::Upstream;

use crate::owner::{OWNER_LABEL as OWNER, SCOPE_LABEL as SCOPE};

use super::labels::OwnerLabels;
use super::ScopeError;

/// The most of an engine answer moat reads (a volume's JSON).
const MAX_ANSWER: usize = 64 * 1024;

/// The `POST /volumes/create` body for volume `name` that the container
/// create `body` mounts.
pub(crate) fn create_body(name: &str, body: &Value, labels: &OwnerLabels) -> Value {
    let hc = body.get("HostConfig");
    let mount = hc
        .and_then(|h| h.get("Mounts"))
        .and_then(Value::as_array)
        .and_then(|ms| {
            ms.iter().find(|m| {
                m.get("Type").and_then(Value::as_str) == Some("volume")
                    && m.get("Source").and_then(Value::as_str) == Some(name)
            })
        });
    let options = mount.and_then(|m| m.get("VolumeOptions"));
    let driver_config = options.and_then(|o| o.get("DriverConfig"));
    let driver = driver_config
        .and_then(|d| d.get("Name"))
        .or_else(|| hc.and_then(|h| h.get("VolumeDriver")))
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .unwrap_or("local");
    let driver_opts = driver_config
        .and_then(|d| d.get("Options"))
        .filter(|o| o.is_object())
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut all_labels = options
        .and_then(|o| o.get("Labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    labels.insert(&mut all_labels);
    json!({"Name": name, "Driver": driver, "DriverOpts": driver_opts, "Labels": all_labels})
}

/// Creates each volume of `names` that `body` (a container create) mounts.
/// `prefix` is the request's API version prefix (`/v1.41` or empty).
pub(crate) async fn create_missing(
    upstream: &Upstream,
    prefix: &str,
    names: &[String],
    body: &Value,
    labels: &OwnerLabels,
) -> Result<(), ScopeError> {
    for name in names {
        let create = create_body(name, body, labels);
        let reply = upstream
            .call(
                Method::POST,
                &format!("{prefix}/volumes/create"),
                Some(&create),
                MAX_ANSWER,
            )
            .await?;
        if !reply.status.is_success() {
            return Err(ScopeError::VolumeCreate {
                name: name.clone(),
                status: reply.status,
                message: reply.message().unwrap_or_else(|| "no message".into()),
            });
        }
        let answer = reply.json().unwrap_or(Value::Null);
        check_created(name, &answer, labels)?;
    }
    Ok(())
}

/// The engine answers a create of an existing volume with that volume:
/// it must carry the caller's scope.
fn check_created(name: &str, answer: &Value, labels: &OwnerLabels) -> Result<(), ScopeError> {
    let got = |k: &str| {
        answer
            .get("Labels")
            .and_then(|l| l.get(k))
            .and_then(Value::as_str)
    };
    if got(SCOPE) == Some(labels.scope.as_str()) {
        return Ok(());
    }
    Err(ScopeError::VolumeTaken {
        name: name.to_string(),
        owner: got(OWNER).unwrap_or("unowned").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> OwnerLabels {
        OwnerLabels {
            owner: "alice".into(),
            scope: "user:alice".into(),
            auth: "tls",
        }
    }

    #[test]
    fn a_bind_volume_is_created_with_the_default_or_given_driver() {
        let b = create_body(
            "data",
            &json!({"HostConfig": {"Binds": ["data:/d"]}}),
            &alice(),
        );
        assert_eq!(b["Name"], "data");
        assert_eq!(b["Driver"], "local");
        assert_eq!(b["Labels"]["io.moat.scope"], "user:alice");
        let b = create_body(
            "data",
            &json!({"HostConfig": {"Binds": ["data:/d"], "VolumeDriver": "other"}}),
            &alice(),
        );
        assert_eq!(b["Driver"], "other");
    }

    #[test]
    fn a_mount_volume_keeps_its_driver_options_and_labels() {
        let body = json!({"HostConfig": {"Mounts": [
            {"Type": "volume", "Source": "other", "Target": "/o"},
            {"Type": "volume", "Source": "data", "Target": "/d", "VolumeOptions": {
                "Labels": {"app": "web"},
                "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs", "device": "tmpfs"}}}}
        ]}});
        let b = create_body("data", &body, &alice());
        assert_eq!(b["DriverOpts"], json!({"type": "tmpfs", "device": "tmpfs"}));
        assert_eq!(b["Labels"]["app"], "web");
        assert_eq!(b["Labels"]["io.moat.owner"], "alice");
    }

    #[test]
    fn an_existing_volume_not_the_callers_is_refused() {
        let mine = json!({"Name": "data", "Labels": {"io.moat.scope": "user:alice", "io.moat.owner": "alice"}});
        assert!(check_created("data", &mine, &alice()).is_ok());
        let bobs = json!({"Name": "data", "Labels": {"io.moat.scope": "user:bob", "io.moat.owner": "bob"}});
        let e = check_created("data", &bobs, &alice())
            .unwrap_err()
            .to_string();
        assert!(e.contains("data") && e.contains("bob"), "{e}");
        let e = check_created("data", &json!({"Name": "data", "Labels": null}), &alice())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unowned"), "{e}");
    }
}
