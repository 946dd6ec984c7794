//! Fuzz target: decodes arbitrary bytes under every protocol version; every
//! packet that decodes must re-encode and decode back to the same packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_codec::{decode, encode, encoded_len, ProtocolVersion};

const VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V31, ProtocolVersion::V311, ProtocolVersion::V5];

fuzz_target!(|data: &[u8]| {
    for version in VERSIONS {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decode(&mut buf, version, usize::MAX) {
            let mut encoded = BytesMut::new();
            encode(&packet, version, &mut encoded).expect("a decoded packet re-encodes");
            assert_eq!(encoded.len(), encoded_len(&packet, version));
            let decoded = decode(&mut encoded, version, usize::MAX)
                .expect("a re-encoded packet decodes")
                .expect("a re-encoded packet is whole");
            assert_eq!(decoded, packet);
            assert!(encoded.is_empty());
        }
    }
});
