//! DNS messages as eve.json's version 2 records: a `query` record per question of a request,
//! an `answer` record per response (its flags, response code and first question). Requests
//! are numbered per flow (`tx_id`).

use crate::app::{text, AppRecord};
use mbox_proto::dns;
use serde_json::{json, Map, Value};

/// A flow's DNS transactions: the number of the next request.
#[derive(Debug, Default)]
pub struct Transactions {
    next_tx: u64,
}

impl Transactions {
    /// Logs one DNS message (a datagram's payload, or one message of a TCP stream).
    pub fn message(&mut self, msg: &[u8], out: &mut dyn FnMut(AppRecord)) {
        let Some(h) = dns::header(msg) else { return };
        let mut questions: Vec<(String, u16)> = Vec::new();
        let whole = dns::for_each_typed_question(msg, |name, qtype| questions.push((text(name), qtype)));
        if !whole && questions.is_empty() {
            return;
        }
        if !h.is_response {
            let tx = self.next_tx;
            self.next_tx += 1;
            for (name, qtype) in &questions {
                let body = json!({ "version": 2, "type": "query", "id": h.id, "rrname": name, "rrtype": dns::type_name(*qtype), "tx_id": tx, "opcode": h.opcode });
                out(AppRecord { event_type: "dns", body, tx_id: None });
            }
            return;
        }
        let mut a = Map::new();
        a.insert("version".into(), json!(2));
        a.insert("type".into(), json!("answer"));
        a.insert("id".into(), json!(h.id));
        a.insert("flags".into(), json!(format!("{:x}", h.flags)));
        a.insert("qr".into(), json!(true));
        // Suricata names the flags that are set, and only those.
        for (bit, name) in [(0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"), (0x0080, "ra"), (0x0020, "z")] {
            if h.flags & bit != 0 {
                a.insert(name.into(), json!(true));
            }
        }
        a.insert("opcode".into(), json!(h.opcode));
        if let Some((name, qtype)) = questions.first() {
            a.insert("rrname".into(), json!(name));
            a.insert("rrtype".into(), json!(dns::type_name(*qtype)));
        }
        a.insert("rcode".into(), json!(dns::rcode_name(h.rcode)));
        out(AppRecord { event_type: "dns", body: Value::Object(a), tx_id: None });
    }
}
