// PLACEHOLDER (uncommitted): replaced by the checkpoint helper's file.
use super::{Idem, Platform};
use dtenge_core::{Error, Result};
use dtenge_network::types::CheckpointView;
impl Platform {
    pub fn checkpoint_now(&self, _idem: Option<&Idem>) -> Result<CheckpointView> {
        Err(Error::internal("placeholder"))
    }
}
