-- Prosody 0.12 for tern-bench (bench/peers/start-prosody fills in @PORT@ and @DIR@).
--
-- The nearest equivalent of ternd's guarantees, on loopback only, and nothing else:
--   c2s on 127.0.0.1 without TLS, SASL PLAIN allowed in clear, plain password storage (the
--   benchmark-only cheap credential check, as ternd runs with --auth-hash-cost test);
--   XEP-0198 stream management (mod_smacks, the "sent" stage); XEP-0184 receipts pass through; offline storage on (mod_offline,
--   internal file storage); in-band registration for everyone; no s2s, no HTTP, no admin
--   socket, no rate limits (ternd runs with its per-user send rate lifted).

run_as_root = true -- the benchmark machine runs everything as root
pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"
log = { { levels = { min = "warn" }, to = "file", filename = "@DIR@/prosody.log" } }
network_backend = "epoll"
network_settings = { tcp_backlog = 4096 } -- as ternd's listen backlog

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { @PORT@ }
s2s_ports = { }
http_ports = { }
https_ports = { }

modules_enabled = {
  "roster"; "saslauth"; "disco"; "ping"; "register"; "smacks"; "offline";
}
modules_disabled = { "s2s"; "tls"; "c2s_tls"; "admin_socket"; "http"; "posix" }

authentication = "internal_plain"
storage = "internal"
allow_registration = true
min_seconds_between_registrations = nil
c2s_require_encryption = false
allow_unencrypted_plain_auth = true

-- smacks_max_queue_size stays at its default (500): the resend queue is preallocated per
-- session (util.queue), and it wraps rather than fails when a client acks late.
smacks_hibernation_time = 0
smacks_max_unacked_stanzas = 0
c2s_timeout = 3600

VirtualHost "localhost"
