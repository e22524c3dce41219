pub mod fsutil;
pub mod identity;
