//! The shell lines printed after `moat certs issue` and `moat up`, which
//! point the docker CLI at a certificate bundle.

use std::path::Path;

/// The shell lines that point the docker CLI at a bundle in `cert_dir`:
/// the `DOCKER_*` exports and the equivalent `docker context create`.
pub fn docker_instructions(host: &str, cert_dir: &Path, context: &str) -> String {
    let d = cert_dir.display();
    format!(
        "export DOCKER_HOST={host}\n\
         export DOCKER_TLS_VERIFY=1\n\
         export DOCKER_CERT_PATH={d}\n\
         \n\
         # or, as a docker context:\n\
         docker context create {context} --docker \"host={host},ca={d}/ca.pem,cert={d}/cert.pem,key={d}/key.pem\"\n\
         docker context use {context}\n"
    )
}
