//! What the node service knows without an lvm read, and when it may trust it: volumes this
//! process created ([`vouched`]), the publish a state record and the kernel prove
//! ([`staged`]), and the start-up pass over first-format marks ([`first_format`]). Staging and
//! publishing themselves are [`vglet_volume`]'s.

pub(crate) mod create_intents;
pub(crate) mod first_format;
pub(crate) mod staged;
pub(crate) mod vouched;
