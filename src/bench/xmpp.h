/* xmpp.h: the XMPP client logic of tern-bench, without I/O.
 *
 * Two layers:
 *   - tern_bench_xml: an incremental tokenizer for an XMPP stream. Bytes go in as they come
 *     off the socket, split anywhere; each complete top-level element (a stanza, or a
 *     stream-level element like <stream:features/> or <a/>) comes out as a small tree. It
 *     knows what XMPP servers send: elements, attributes, text, the five predefined entities
 *     and character references, CDATA, comments and the XML declaration. No DTDs.
 *   - tern_bench_xmpp: one c2s session, no TLS: SASL PLAIN, resource binding, the legacy
 *     session, XEP-0198 stream management (enable, <r/>/<a h=/>), XEP-0184 receipts, and
 *     XEP-0077 in-band registration (a session in register mode only registers), and the
 *     XEP-0045 multi-user chat a group benchmark needs: joining a room (creating it as an
 *     instant room when it is new), groupchat messages and their reflections.
 *
 * The session writes what it wants to send into `out`; the caller writes those bytes to the
 * socket and consumes them (tern_buf_consume / reset). Events come back through a callback,
 * never re-entrantly from inside tern_bench_xmpp_send_msg. Strings in events are valid during
 * the callback only. */
#ifndef TERN_BENCH_XMPP_H
#define TERN_BENCH_XMPP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* ---- the tokenizer ---- */

#define TERN_BENCH_XML_NONE UINT32_MAX
#define TERN_BENCH_XML_MAX_DEPTH 32
#define TERN_BENCH_XML_MAX_STANZA (1u << 20) /* a larger element is a stream error */

typedef struct tern_bench_xml_node {
  uint32_t name;        /* offset of the NUL-terminated qualified name in strs */
  uint32_t attr0;       /* index of its first attribute in attrs */
  uint32_t n_attrs;
  uint32_t first_child; /* node index, or TERN_BENCH_XML_NONE */
  uint32_t last_child;
  uint32_t next;        /* next sibling */
  uint32_t text;        /* offset of the NUL-terminated text (leaf elements; "" otherwise) */
  uint32_t text_len;
} tern_bench_xml_node;

typedef struct tern_bench_xml tern_bench_xml;

/* Called for the stream header (root = the <stream:stream> element, without children), for
 * each complete top-level element, and at </stream:stream> (root NONE). */
typedef enum { TERN_BENCH_XML_STREAM_OPEN, TERN_BENCH_XML_ELEMENT, TERN_BENCH_XML_STREAM_CLOSE } tern_bench_xml_ev;
typedef void (*tern_bench_xml_cb)(tern_bench_xml *x, tern_bench_xml_ev ev, uint32_t root, void *arg);

struct tern_bench_xml {
  int state;                 /* tokenizer state (xmpp.c) */
  int depth;                 /* open elements, the stream root included */
  uint8_t quote;             /* the quote of the attribute value being read */
  bool failed;               /* a syntax error: stop */
  tern_buf tok;              /* the name or value being read */
  tern_buf ent;              /* an entity reference being read */
  tern_buf text;             /* text of the innermost open element */
  tern_buf strs;             /* names, values and texts of the current element tree */
  tern_bench_xml_node *nodes;
  uint32_t n_nodes, cap_nodes;
  uint32_t (*attrs)[2];      /* (name, value) offsets into strs */
  uint32_t n_attrs, cap_attrs;
  uint32_t stack[TERN_BENCH_XML_MAX_DEPTH]; /* open nodes (depth ≥ 1) */
  uint32_t cur;              /* the element whose start tag is being read */
  size_t bytes;              /* bytes of the current top-level element, against the limit */
  int sub;                   /* sub-state counter for <!-- --> and <![CDATA[ ]]> */
  tern_bench_xml_cb cb;
  void *arg;
};

void tern_bench_xml_init(tern_bench_xml *x, tern_bench_xml_cb cb, void *arg);
/* Forgets everything: a new stream starts (after SASL success). */
void tern_bench_xml_reset(tern_bench_xml *x);
void tern_bench_xml_free(tern_bench_xml *x);
/* Parses len bytes. Returns 0, or -1 on a syntax error or an over-long element (then stop). */
int tern_bench_xml_feed(tern_bench_xml *x, const char *data, size_t len);

/* Accessors for a tree handed to the callback. */
const char *tern_bench_xml_name(const tern_bench_xml *x, uint32_t node);
/* The name without its prefix ("features" for "stream:features"). */
const char *tern_bench_xml_local(const tern_bench_xml *x, uint32_t node);
/* An attribute's value, or NULL. */
const char *tern_bench_xml_attr(const tern_bench_xml *x, uint32_t node, const char *name);
const char *tern_bench_xml_text(const tern_bench_xml *x, uint32_t node, size_t *len);
/* The first child with this local name (and this xmlns when ns is not NULL), or NONE. */
uint32_t tern_bench_xml_child(const tern_bench_xml *x, uint32_t node, const char *local, const char *ns);
uint32_t tern_bench_xml_first(const tern_bench_xml *x, uint32_t node);
uint32_t tern_bench_xml_next(const tern_bench_xml *x, uint32_t node);

/* ---- the session ---- */

typedef enum { TERN_BENCH_XMPP_LOGIN = 0, TERN_BENCH_XMPP_REGISTER } tern_bench_xmpp_mode;

typedef enum {
  TERN_BENCH_XMPP_EV_READY = 1, /* bound, stream management on, initial presence sent */
  TERN_BENCH_XMPP_EV_REGISTERED, /* register mode: done (conflict: the account existed) */
  TERN_BENCH_XMPP_EV_SENT,      /* the server acked (XEP-0198) the message gidx */
  TERN_BENCH_XMPP_EV_MSG,       /* a message: from (local part), id, body */
  TERN_BENCH_XMPP_EV_RECEIPT,   /* a XEP-0184 receipt for the message id */
  TERN_BENCH_XMPP_EV_ERROR,     /* an error stanza: id (maybe NULL), cond */
  TERN_BENCH_XMPP_EV_FAILED,    /* the session cannot go on: cond says why */
  TERN_BENCH_XMPP_EV_CLOSED,    /* the server closed the stream */
  TERN_BENCH_XMPP_EV_JOINED,    /* MUC: we are an occupant of room `group` (a new room is
                                   configured as an instant room first) */
} tern_bench_xmpp_ev_type;

typedef struct tern_bench_xmpp_event {
  tern_bench_xmpp_ev_type type;
  uint64_t gidx;       /* SENT */
  const char *from;    /* MSG: the sender's local part (not NUL-terminated: from_len) */
  size_t from_len;
  const char *id;      /* MSG, RECEIPT, ERROR: the stanza id (RECEIPT: of the original) */
  const char *body;    /* MSG */
  size_t body_len;
  const char *cond;    /* ERROR, FAILED: a condition ("conflict", "not-authorized", ...) */
  bool conflict;       /* REGISTERED: the account existed already */
  const char *group;   /* MSG of type groupchat, JOINED, ERROR from a room: the room's local
                          part (not NUL-terminated: group_len); NULL otherwise. MSG's from is
                          then the sender's nick, which tern-bench makes its user name */
  size_t group_len;
  bool created;        /* JOINED: the room was new and we configured it */
} tern_bench_xmpp_event;

typedef void (*tern_bench_xmpp_cb)(void *arg, const tern_bench_xmpp_event *ev);

typedef enum {
  TERN_BENCH_XS_FEATURES = 0, /* waiting for the first stream features */
  TERN_BENCH_XS_REGISTER,     /* iq register sent */
  TERN_BENCH_XS_AUTH,         /* SASL PLAIN sent */
  TERN_BENCH_XS_FEATURES2,    /* stream restarted after SASL; waiting for features */
  TERN_BENCH_XS_BIND,         /* bind iq sent */
  TERN_BENCH_XS_SESSION,      /* session iq sent */
  TERN_BENCH_XS_SM,           /* <enable/> sent */
  TERN_BENCH_XS_READY,        /* messages flow */
  TERN_BENCH_XS_DONE,         /* registered, failed or closed */
} tern_bench_xmpp_state;

typedef struct tern_bench_xmpp {
  tern_bench_xml xml;
  tern_buf out;               /* bytes to write to the server */
  tern_bench_xmpp_mode mode;
  tern_bench_xmpp_state state;
  char user[64];
  char password[129];
  char domain[256];
  char resource[32];
  bool receipts;              /* answer XEP-0184 requests */
  bool session_needed;        /* the server offered a non-optional session */
  bool sm_offered;            /* the server offered urn:xmpp:sm:3 */
  uint32_t out_h;             /* stanzas sent since <enable/> */
  uint32_t in_h;              /* stanzas received since <enabled/> */
  uint32_t acked_h;           /* the last h the server acked */
  uint32_t since_r;           /* messages sent since the last <r/> */
  uint32_t ack_every;         /* ask after this many (tern_bench_xmpp_set_acks; 1 by default) */
  uint32_t ack_window;        /* ... or once this many are unacked (0: no such rule) */
  uint64_t last_r_ns;         /* when the last <r/> went out */
  bool need_a;                /* the server asked for an ack (<r/>) in this read */
  uint32_t (*pend)[3];        /* ring of (stanza number, gidx low, gidx high) awaiting <a/> */
  uint32_t pend_head, pend_len, pend_cap;
  uint64_t rcpt_ctr;          /* ids for our receipt stanzas */
  char muc[256];              /* the MUC service's domain (tern_bench_xmpp_join) */
  tern_bench_xmpp_cb cb;
  void *arg;
} tern_bench_xmpp;

/* Starts a session: the stream header is in out afterwards. Strings are copied. */
void tern_bench_xmpp_init(tern_bench_xmpp *s, tern_bench_xmpp_mode mode, const char *user, const char *password,
                          const char *domain, bool receipts, tern_bench_xmpp_cb cb, void *arg);
void tern_bench_xmpp_free(tern_bench_xmpp *s);
/* Feeds bytes from the server. Returns 0, or -1 when the stream is broken (FAILED was emitted). */
int tern_bench_xmpp_feed(tern_bench_xmpp *s, const char *data, size_t len);
/* Queues a chat message to to@domain with id "g<gidx>" and a XEP-0184 request. 0 or -ENOTCONN. */
int tern_bench_xmpp_send_msg(tern_bench_xmpp *s, const char *to, uint64_t gidx, const char *body, size_t len);
/* Joins room@muc_domain with our user name as the nick, without history
 * (<history maxstanzas='0'/>); JOINED follows (or ERROR with group set). A room that is new is
 * locked until its owner configures it (XEP-0045 10.1.2): the session then submits the empty
 * form, which makes it an instant room with the service's defaults, and JOINED comes once the
 * service accepted it. 0 or -ENOTCONN. */
int tern_bench_xmpp_join(tern_bench_xmpp *s, const char *room, const char *muc_domain);
/* Queues a groupchat message to room@muc with id "g<gidx>" (no receipt request: XEP-0184 is
 * not for rooms); SENT follows when the server acks it. 0 or -ENOTCONN. */
int tern_bench_xmpp_send_groupchat(tern_bench_xmpp *s, const char *room, uint64_t gidx, const char *body, size_t len);
/* End of a batch: asks for an ack (<r/>) when messages went out since the last one. */
/* Asks for an ack (<r/>) when it is due: ack_every stanzas since the last, the unacked ones
 * filling ack_window, or force (the driver's idle timer) with any unasked. */
void tern_bench_xmpp_flush(tern_bench_xmpp *s);
void tern_bench_xmpp_flush_idle(tern_bench_xmpp *s, uint64_t now_ns, uint64_t idle_ns);
/* How often to ask for acks: after every stanzas (1: after every batch), or once window are
 * unacked. Real clients ask sparingly; asking after every message costs the server a stanza
 * per message. */
void tern_bench_xmpp_set_acks(tern_bench_xmpp *s, uint32_t every, uint32_t window);
/* Queues </stream:stream>. */
void tern_bench_xmpp_close(tern_bench_xmpp *s);
/* Messages sent and not yet acked. */
uint32_t tern_bench_xmpp_unacked(const tern_bench_xmpp *s);

#endif
