//! Frameguard configuration (KDL, in the shape of the sentinel.kdl examples).
pub mod policy;
