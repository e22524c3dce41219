//! Every handshake message decoder on arbitrary bodies: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localstream_proto::handshake::messages::{
    Alert, ClientHello, IdentityMsg, KeyReveal, ServerHello, decode_finished, decode_verify,
};

fuzz_target!(|data: &[u8]| {
    let _ = ClientHello::decode(data);
    let _ = ServerHello::decode(data);
    let _ = KeyReveal::decode(data);
    let _ = IdentityMsg::decode(data);
    let _ = Alert::decode(data);
    let _ = decode_verify(data);
    let _ = decode_finished(data);
});
