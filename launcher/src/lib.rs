//! The `kubernate` launcher: what an operator runs first.
//!
//! Today it creates a cluster's public-key infrastructure, the certificates
//! and kubeconfigs every component identifies itself with; starting a local
//! cluster (`kubernate up`) comes next.
//!
//! # Layout
//!
//! - [`pki`]: `kubernate pki init` and `kubernate pki node`: which identities
//!   a cluster has ([`pki::plan`]), the certificate authorities that sign
//!   them ([`pki::authority`]), and writing key material safely
//!   ([`pki::files`]).

pub mod image;
pub mod pki;
pub mod up;
