//! The gRPC face: the three CSI services as adapters (parse and validate the request, call
//! the layer below, map its error to a code), the server on the unix socket with its tower
//! layer, and start-up as the server sees it. The one error-to-code map is `crate::status`.
//! Nothing below this module imports from it.

pub(crate) mod authority;
pub(crate) mod controller;
pub(crate) mod identity;
pub(crate) mod node;
pub(crate) mod rpc_layer;
pub mod server;
pub mod startup;
