//! Record codec micro-benchmark: ns per record to encode (rkyv + frame + CRC) and to
//! validate (frame CRC + rkyv access in place) a typical append entry.
//!
//! Run: `cargo bench --bench record_codec`

use std::hint::black_box;
use std::time::Instant;

use starcite::log::frame;
use starcite::raft::record::{access, LogRecord, RecordPayload};
use starcite::session::{Command, EventBody};

fn entry(payload_bytes: usize) -> LogRecord {
    LogRecord::Entry {
        shard: 17,
        term: 3,
        node: 1,
        index: 123_456,
        payload: RecordPayload::Normal(vec![std::sync::Arc::new(Command::Append {
            session_id: "ses_0123456789abcdefghij".into(),
            event: EventBody {
                event_type: "message".into(),
                payload_json: format!("{{\"text\":\"{}\"}}", "x".repeat(payload_bytes)),
                actor: "agent:planner".into(),
                source: Some("bench".into()),
                metadata_json: "{}".into(),
                refs_json: "{}".into(),
                fingerprint: 0x1234_5678_9abc_def0,
            },
            idempotency_key: Some("key-0001".into()),
            expected_seq: None,
            now_micros: 1_790_000_000_000_000,
        })]),
    }
}

fn main() {
    let iterations = 200_000;
    println!("{:>10} {:>14} {:>14} {:>12}", "payload_B", "encode_ns", "validate_ns", "frame_B");
    for payload in [64usize, 256, 1024, 4096] {
        let rec = entry(payload);
        let mut out = Vec::with_capacity(1 << 20);
        let started = Instant::now();
        for _ in 0..iterations {
            out.clear();
            let bytes = black_box(&rec).encode();
            frame::encode_into(&mut out, &bytes);
            black_box(&out);
        }
        let encode_ns = started.elapsed().as_nanos() as f64 / iterations as f64;
        let framed = out.clone();
        // Validation reads from an 8-aligned buffer, like a DMA read.
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(&framed);
        let started = Instant::now();
        for _ in 0..iterations {
            let frame::Decoded::Record { payload, .. } = frame::decode(black_box(&aligned)) else { panic!("bad frame") };
            let archived = access(payload).expect("valid record");
            black_box(archived.shard());
        }
        let validate_ns = started.elapsed().as_nanos() as f64 / iterations as f64;
        println!("{payload:>10} {encode_ns:>14.0} {validate_ns:>14.0} {:>12}", framed.len());
    }
}
