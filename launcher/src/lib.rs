//! The `kubernate` launcher: what an operator runs first.
//!
//! It creates a cluster's public-key infrastructure (the certificates and
//! kubeconfigs every component identifies itself with), loads images into
//! the local store, and starts a whole cluster on this machine.
//!
//! # Layout
//!
//! - [`pki`]: `kubernate pki init`, `pki node`, `pki user`: which
//!   identities a cluster has ([`pki::plan`]), the certificate authorities
//!   that sign them ([`pki::authority`]), and writing key material safely
//!   ([`pki::files`]).
//! - [`image`]: `kubernate image import/list`; [`busybox`]: the test image
//!   made from the host's static busybox.
//! - [`up`]: `kubernate up` and `down`.

pub mod busybox;
pub mod image;
pub mod pki;
pub mod up;
