// PLACEHOLDER (uncommitted): replaced by the notices helper's file.
use super::Platform;
use dtenge_core::{Error, Result};
use dtenge_network::types::NotificationPage;
impl Platform {
    pub fn notifications(&self, _node_id: &str, _offset: usize, _limit: usize) -> Result<NotificationPage> {
        Err(Error::internal("placeholder"))
    }
}
