// A stand-in for an XMPP server (ejabberd, Prosody), just large enough for tern-bench's XMPP
// driver: c2s without TLS, XEP-0077 in-band registration, SASL PLAIN, resource binding,
// XEP-0198 stream management (<r/> answered with <a h=/>), and routing of messages and
// XEP-0184 receipts between the users online, and XEP-0045 rooms at conference.localhost
// (a join creates a room locked until its owner submits the configuration form, as the
// standard says; groupchat messages are reflected to every occupant, the sender included). It parses only what that client writes (one
// top-level element after another, no nesting of same-named elements); it is a test fixture,
// not an XMPP implementation.
import net from 'node:net';

const HEADER = "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' " +
  "xmlns='jabber:client' from='localhost' id='standin' version='1.0'>";
const FEATURES_AUTH = "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" +
  "<mechanism>PLAIN</mechanism></mechanisms><register xmlns='http://jabber.org/features/iq-register'/>" +
  '</stream:features>';
const FEATURES_BOUND = "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" +
  "<sm xmlns='urn:xmpp:sm:3'/></stream:features>";

function attr(el, name) {
  const m = el.match(new RegExp(`\\s${name}='([^']*)'`));
  return m ? m[1] : null;
}

/** The next complete top-level piece of s (a header, a closing tag or an element), or null. */
function nextElement(s) {
  let m;
  if ((m = s.match(/^<\?xml[^>]*\?>/))) return m[0];
  if ((m = s.match(/^<stream:stream[^>]*>/))) return m[0];
  if (s.startsWith('</stream:stream>')) return '</stream:stream>';
  if ((m = s.match(/^<([a-zA-Z:]+)[^>]*?\/>/))) return m[0];
  if ((m = s.match(/^<([a-zA-Z:]+)[^>]*>/))) {
    const end = s.indexOf(`</${m[1]}>`);
    return end < 0 ? null : s.slice(0, end + m[1].length + 3);
  }
  return null;
}

/** Starts the stand-in on a free loopback port. Resolves with { port, stats, close() }. */
export function startXmppStandin() {
  const users = new Map();  // name -> password
  const online = new Map(); // name -> session
  const stats = { registered: 0, conflicts: 0, logins: 0, routed: 0, acks: 0, rooms: 0, joins: 0, groupchat: 0 };
  const rooms = new Map();  // room -> Map(nick -> session)
  const MUC = 'conference.localhost';
  const occupant = (room, nick, extra = '') =>
    `<presence from='${room}@${MUC}/${nick}'><x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/>${extra}</x></presence>`;
  const sockets = new Set();

  function handle(st, el) {
    const send = (s) => { if (!st.sock.destroyed) st.sock.write(s); };
    if (el.startsWith('<?xml')) return;
    if (el.startsWith('<stream:stream')) { send(HEADER + (st.user ? FEATURES_BOUND : FEATURES_AUTH)); return; }
    if (el === '</stream:stream>') { send('</stream:stream>'); st.sock.end(); return; }
    if (el.startsWith('<iq') && attr(el, 'id') === 'reg') {
      const name = el.match(/<username>([^<]*)<\/username>/)[1];
      const password = el.match(/<password>([^<]*)<\/password>/)[1];
      if (users.has(name)) {
        stats.conflicts++;
        send("<iq type='error' id='reg'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>");
      } else {
        users.set(name, password);
        stats.registered++;
        send("<iq type='result' id='reg'/>");
      }
      return;
    }
    if (el.startsWith('<auth')) {
      const [, name, password] = Buffer.from(el.match(/>([^<]*)</)[1], 'base64').toString('utf8').split('\0');
      if (users.get(name) !== password) {
        send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
        return;
      }
      st.user = name;
      stats.logins++;
      send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
      return;
    }
    if (el.startsWith('<iq') && attr(el, 'id') === 'bind') {
      online.set(st.user, st);
      send(`<iq type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>${st.user}@localhost/bench</jid></bind></iq>`);
      return;
    }
    if (el.startsWith('<enable')) { st.h = 0; send("<enabled xmlns='urn:xmpp:sm:3'/>"); return; }
    if (el.startsWith('<r ')) { stats.acks++; send(`<a xmlns='urn:xmpp:sm:3' h='${st.h}'/>`); return; }
    if (el.startsWith('<a ')) return;
    const to = attr(el, 'to') || '';
    if (el.startsWith('<presence') && to.includes(`@${MUC}/`)) {
      st.h++;
      const [room, nick] = [to.split('@')[0], to.split('/')[1]];
      let occ = rooms.get(room);
      if (!occ) {
        occ = new Map();
        rooms.set(room, occ);
        occ.set(nick, st);
        stats.rooms++;
        send(occupant(room, nick, "<status code='110'/><status code='201'/>"));
        return;
      }
      for (const [n, o] of occ) {
        send(occupant(room, n));
        if (!o.sock.destroyed) o.sock.write(occupant(room, nick));
      }
      occ.set(nick, st);
      stats.joins++;
      send(occupant(room, nick, "<status code='110'/>") + `<message from='${room}@${MUC}' type='groupchat'><subject/></message>`);
      return;
    }
    if (el.startsWith('<iq') && (attr(el, 'id') || '').startsWith('cfg:')) {
      st.h++;
      send(`<iq type='result' id='${attr(el, 'id')}' from='${to}'/>`);
      return;
    }
    if (el.startsWith('<presence')) { st.h++; return; }
    if (el.startsWith('<message') && attr(el, 'type') === 'groupchat') {
      st.h++;
      const room = to.split('@')[0];
      const occ = rooms.get(room);
      if (!occ || ![...occ.values()].includes(st)) return;
      stats.groupchat++;
      const nick = [...occ].find(([, o]) => o === st)[0];
      for (const o of occ.values()) {
        if (!o.sock.destroyed) o.sock.write(el.replace(/^<message/, `<message from='${room}@${MUC}/${nick}'`).replace(/ to='[^']*'/, ''));
      }
      return;
    }
    if (el.startsWith('<message')) {
      st.h++;
      const peer = online.get((attr(el, 'to') || '').split('@')[0]);
      if (peer && !peer.sock.destroyed) {
        stats.routed++;
        peer.sock.write(el.replace(/^<message/, `<message from='${st.user}@localhost/bench'`));
      }
    }
  }

  const server = net.createServer((sock) => {
    const st = { sock, buf: '', user: null, h: 0 };
    sockets.add(sock);
    sock.setEncoding('utf8');
    sock.on('data', (d) => {
      st.buf += d;
      for (;;) {
        st.buf = st.buf.replace(/^\s+/, '');
        const el = nextElement(st.buf);
        if (!el) break;
        st.buf = st.buf.slice(el.length);
        handle(st, el);
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      sockets.delete(sock);
      if (st.user && online.get(st.user) === st) online.delete(st.user);
    });
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      stats,
      close: () => new Promise((done) => {
        for (const s of sockets) s.destroy();
        server.close(() => done());
      }),
    }));
  });
}
