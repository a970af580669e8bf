#!/usr/bin/env python3
"""Reduces eve.json files to the key fields of each record type, one TSV row per record:
the form in which mbox's eve.json is compared with Suricata's (mbox-core/tests/reference_eve.rs,
docs/ids.md "eve.json against Suricata's").

Usage: eve-keys.py NAME=EVE.JSON [NAME=EVE.JSON ...] > KEYS.tsv
Each row: capture name, record type, then that type's key fields (below), tab-separated, '-'
for a field the record lacks. Alerts are deduplicated (Suricata logs every match, mbox one per
rule, flow and direction); the other types keep one row per record. Rows are sorted."""
import json
import sys

# The fields compared, by record type (dotted paths into the record).
KEYS = {
    "alert": ["src_ip", "src_port", "dest_ip", "dest_port", "proto", "alert.action", "alert.gid", "alert.signature_id",
              "alert.rev", "alert.signature", "alert.category", "alert.severity", "app_proto", "direction", "flow.start"],
    "http": ["src_ip", "src_port", "dest_ip", "dest_port", "http.hostname", "http.http_port", "http.url",
             "http.http_user_agent", "http.http_content_type", "http.http_refer", "http.http_method", "http.protocol",
             "http.status", "http.length"],
    "dns": ["src_ip", "src_port", "dest_ip", "dest_port", "proto", "dns.type", "dns.id", "dns.rrname", "dns.rrtype",
            "dns.opcode", "dns.flags", "dns.rcode"],
    "tls": ["src_ip", "src_port", "dest_ip", "dest_port", "tls.sni", "tls.version", "tls.subject", "tls.issuerdn",
            "tls.serial", "tls.fingerprint", "tls.notbefore", "tls.notafter"],
    "ssh": ["src_ip", "src_port", "dest_ip", "dest_port", "ssh.client.proto_version", "ssh.client.software_version",
            "ssh.server.proto_version", "ssh.server.software_version"],
    "smtp": ["src_ip", "src_port", "dest_ip", "dest_port", "smtp.helo", "smtp.mail_from", "smtp.rcpt_to"],
    "flow": ["src_ip", "src_port", "dest_ip", "dest_port", "proto", "vlan", "app_proto", "flow.pkts_toserver",
             "flow.pkts_toclient", "flow.bytes_toserver", "flow.bytes_toclient", "flow.start", "flow.end", "flow.state",
             "flow.alerted"],
    "stats": ["stats.decoder.pkts", "stats.decoder.bytes"],
}


def field(record, path):
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return "-"
        value = value[part]
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).replace("\t", " ").replace("\n", " ")


def main():
    rows = set()
    counted = []
    for arg in sys.argv[1:]:
        name, path = arg.split("=", 1)
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                record = json.loads(line)
                kind = record.get("event_type")
                if kind not in KEYS:
                    continue
                row = "\t".join([name, kind] + [field(record, k) for k in KEYS[kind]])
                if kind == "alert":
                    rows.add(row)
                else:
                    counted.append(row)
    for row in sorted(list(rows) + counted):
        print(row)


if __name__ == "__main__":
    main()
