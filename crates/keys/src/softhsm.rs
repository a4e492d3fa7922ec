//! A SoftHSM2 token of its own, for the tests and for trying the HSM path without an HSM:
//! a configuration file and a token directory under a folder, and a token initialized there
//! with `softhsm2-util` (Debian's `softhsm2` package, which `scripts/test.sh` installs).
//! SoftHSM reads its configuration from `SOFTHSM2_CONF` when the module is initialized, so a
//! process uses one such folder.

use std::path::{Path, PathBuf};

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The environment variable SoftHSM2 reads its configuration file from.
pub const CONF_ENV: &str = "SOFTHSM2_CONF";

/// A token initialized under a folder.
pub struct Token {
    /// The configuration file to pass in [`CONF_ENV`].
    pub conf: PathBuf,
    pub label: String,
    pub pin: String,
}

impl Token {
    /// Initialize a token labelled `label` with user PIN `pin` under `folder`.
    pub fn init(folder: &Path, label: &str, pin: &str) -> Result<Token, String> {
        if !Path::new(MODULE).exists() {
            return Err(format!("{MODULE} is missing: install Debian's softhsm2 (scripts/test.sh does)"));
        }
        let tokens = folder.join("tokens");
        std::fs::create_dir_all(&tokens).map_err(|e| e.to_string())?;
        let conf = folder.join("softhsm2.conf");
        let text =
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display());
        std::fs::write(&conf, text).map_err(|e| e.to_string())?;
        let output = std::process::Command::new("softhsm2-util")
            .env(CONF_ENV, &conf)
            .args(["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", &format!("so-{pin}")])
            .output()
            .map_err(|e| format!("softhsm2-util: {e}"))?;
        if !output.status.success() {
            return Err(format!("softhsm2-util: {}", String::from_utf8_lossy(&output.stderr)));
        }
        Ok(Token { conf, label: label.into(), pin: pin.into() })
    }

    /// The vault's configuration for this token.
    pub fn config(&self) -> crate::hsm::HsmConfig {
        crate::hsm::HsmConfig { module: MODULE.into(), token: self.label.clone(), pin: self.pin.clone() }
    }
}
