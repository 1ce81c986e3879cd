/* xmpp.c: the XMPP client logic (see xmpp.h): a byte-at-a-time XML stream tokenizer that
 * builds one small tree per top-level element, and the c2s session state machine on top.
 *
 * The tokenizer never rescans: bytes may be split anywhere (inside a name, an entity, a
 * quoted value, between '?' and '>'), which the unit test checks by feeding recorded server
 * streams in every split. A tree lives in an arena (nodes, attributes, one string buffer)
 * that is reset when the next top-level element starts, so an idle connection keeps only
 * the capacity of its largest stanza, and we drop that when it grows past a few KiB. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/util.h"
#include "bench/xmpp.h"

#define NONE TERN_BENCH_XML_NONE
#define KEEP_BYTES 8192 /* arena buffers larger than this are freed after each element */

enum {
  X_TEXT = 0, /* character data (or whitespace between stanzas) */
  X_LT,       /* after '<' */
  X_NAME,     /* start-tag name */
  X_ATTRS,    /* inside a start tag, between attributes */
  X_ANAME,    /* attribute name */
  X_AEQ,      /* after the attribute name, before '=' */
  X_AQ,       /* after '=', before the quote */
  X_AVAL,     /* quoted attribute value */
  X_SELF,     /* after '/' in a start tag */
  X_ENDNAME,  /* end-tag name */
  X_ENDWS,    /* whitespace after the end-tag name */
  X_PI,       /* <? ... ?> */
  X_PI_Q,     /* '?' seen inside a PI */
  X_BANG,     /* after "<!" */
  X_COMMENT,  /* <!-- ... --> */
  X_CDATA,    /* <![CDATA[ ... ]]> */
};

/* ---- the arena ---- */

static uint32_t str_add(tern_bench_xml *x, const char *s, size_t n) {
  uint32_t off = (uint32_t)x->strs.len;
  tern_buf_append(&x->strs, s, n);
  tern_buf_putc(&x->strs, '\0');
  return off;
}

static void arena_reset(tern_bench_xml *x) {
  x->n_nodes = 0;
  x->n_attrs = 0;
  tern_buf_reset(&x->strs);
  if (x->strs.cap > KEEP_BYTES) tern_buf_free(&x->strs);
  if (x->cap_nodes > 64) {
    tern_free(x->nodes);
    x->nodes = NULL;
    x->cap_nodes = 0;
  }
  if (x->cap_attrs > 128) {
    tern_free(x->attrs);
    x->attrs = NULL;
    x->cap_attrs = 0;
  }
}

static uint32_t node_new(tern_bench_xml *x, const char *name, size_t n) {
  if (x->n_nodes == x->cap_nodes) {
    x->cap_nodes = x->cap_nodes ? x->cap_nodes * 2 : 16;
    x->nodes = tern_realloc(x->nodes, x->cap_nodes * sizeof *x->nodes);
  }
  uint32_t i = x->n_nodes++;
  tern_bench_xml_node *nd = &x->nodes[i];
  nd->name = str_add(x, name, n);
  nd->attr0 = x->n_attrs;
  nd->n_attrs = 0;
  nd->first_child = nd->last_child = nd->next = NONE;
  nd->text = nd->name + (uint32_t)n; /* the name's NUL: "" until a leaf's text is stored */
  nd->text_len = 0;
  return i;
}

static void attr_add(tern_bench_xml *x, uint32_t node, uint32_t name, const char *v, size_t n) {
  if (x->n_attrs == x->cap_attrs) {
    x->cap_attrs = x->cap_attrs ? x->cap_attrs * 2 : 32;
    x->attrs = tern_realloc(x->attrs, x->cap_attrs * sizeof *x->attrs);
  }
  x->attrs[x->n_attrs][0] = name;
  x->attrs[x->n_attrs][1] = str_add(x, v, n);
  x->n_attrs++;
  x->nodes[node].n_attrs++;
}

/* ---- accessors ---- */

const char *tern_bench_xml_name(const tern_bench_xml *x, uint32_t node) {
  return node == NONE ? "" : x->strs.data + x->nodes[node].name;
}

const char *tern_bench_xml_local(const tern_bench_xml *x, uint32_t node) {
  const char *n = tern_bench_xml_name(x, node);
  const char *c = strchr(n, ':');
  return c ? c + 1 : n;
}

const char *tern_bench_xml_attr(const tern_bench_xml *x, uint32_t node, const char *name) {
  if (node == NONE) return NULL;
  const tern_bench_xml_node *nd = &x->nodes[node];
  for (uint32_t i = 0; i < nd->n_attrs; i++) {
    const uint32_t *a = x->attrs[nd->attr0 + i];
    if (strcmp(x->strs.data + a[0], name) == 0) return x->strs.data + a[1];
  }
  return NULL;
}

const char *tern_bench_xml_text(const tern_bench_xml *x, uint32_t node, size_t *len) {
  if (node == NONE || !x->strs.data) {
    if (len) *len = 0;
    return "";
  }
  if (len) *len = x->nodes[node].text_len;
  return x->strs.data + x->nodes[node].text;
}

uint32_t tern_bench_xml_first(const tern_bench_xml *x, uint32_t node) {
  return node == NONE ? NONE : x->nodes[node].first_child;
}

uint32_t tern_bench_xml_next(const tern_bench_xml *x, uint32_t node) { return node == NONE ? NONE : x->nodes[node].next; }

uint32_t tern_bench_xml_child(const tern_bench_xml *x, uint32_t node, const char *local, const char *ns) {
  for (uint32_t c = tern_bench_xml_first(x, node); c != NONE; c = tern_bench_xml_next(x, c)) {
    if (strcmp(tern_bench_xml_local(x, c), local) != 0) continue;
    if (ns) {
      const char *xmlns = tern_bench_xml_attr(x, c, "xmlns");
      if (!xmlns || strcmp(xmlns, ns) != 0) continue;
    }
    return c;
  }
  return NONE;
}

/* ---- the tokenizer ---- */

void tern_bench_xml_init(tern_bench_xml *x, tern_bench_xml_cb cb, void *arg) {
  memset(x, 0, sizeof *x);
  x->cb = cb;
  x->arg = arg;
  x->cur = NONE;
}

void tern_bench_xml_reset(tern_bench_xml *x) {
  x->state = X_TEXT;
  x->depth = 0;
  x->failed = false;
  x->bytes = 0;
  x->sub = 0;
  x->cur = NONE;
  tern_buf_reset(&x->tok);
  tern_buf_reset(&x->ent);
  tern_buf_reset(&x->text);
  arena_reset(x);
}

void tern_bench_xml_free(tern_bench_xml *x) {
  tern_buf_free(&x->tok);
  tern_buf_free(&x->ent);
  tern_buf_free(&x->text);
  tern_buf_free(&x->strs);
  tern_free(x->nodes);
  tern_free(x->attrs);
  memset(x, 0, sizeof *x);
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static void put_utf8(tern_buf *b, uint32_t cp) {
  char u[4];
  if (cp < 0x80) {
    tern_buf_putc(b, (char)cp);
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | (cp >> 6));
    u[1] = (char)(0x80 | (cp & 0x3F));
    tern_buf_append(b, u, 2);
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | (cp >> 12));
    u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    tern_buf_append(b, u, 3);
  } else {
    u[0] = (char)(0xF0 | (cp >> 18));
    u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    tern_buf_append(b, u, 4);
  }
}

/* Decodes the entity in x->ent (without '&' and ';') onto out. */
static int entity(tern_bench_xml *x, tern_buf *out) {
  const char *e = tern_buf_cstr(&x->ent);
  int rc = 0;
  if (strcmp(e, "lt") == 0) tern_buf_putc(out, '<');
  else if (strcmp(e, "gt") == 0) tern_buf_putc(out, '>');
  else if (strcmp(e, "amp") == 0) tern_buf_putc(out, '&');
  else if (strcmp(e, "quot") == 0) tern_buf_putc(out, '"');
  else if (strcmp(e, "apos") == 0) tern_buf_putc(out, '\'');
  else if (e[0] == '#') {
    char *end;
    unsigned long cp = e[1] == 'x' ? strtoul(e + 2, &end, 16) : strtoul(e + 1, &end, 10);
    if (*end || end == e + 1 || cp == 0 || cp > 0x10FFFF) rc = -1;
    else put_utf8(out, (uint32_t)cp);
  } else {
    rc = -1;
  }
  tern_buf_reset(&x->ent);
  return rc;
}

/* Feeds one character of text or of an attribute value, decoding entities. */
static int text_char(tern_bench_xml *x, tern_buf *out, char c) {
  if (x->ent.len) {
    if (c == ';') {
      tern_buf_consume(&x->ent, 1); /* the '&' marker */
      return entity(x, out);
    }
    if (x->ent.len > 12) return -1;
    tern_buf_putc(&x->ent, c);
    return 0;
  }
  if (c == '&') {
    tern_buf_putc(&x->ent, '&');
    return 0;
  }
  tern_buf_putc(out, c);
  return 0;
}

/* A start tag's name is complete: make its node. */
static void start_element(tern_bench_xml *x) {
  if (x->depth == 0 || x->depth == 1) arena_reset(x); /* a new tree: the stream root or a stanza */
  uint32_t n = node_new(x, x->tok.data ? x->tok.data : "", x->tok.len);
  if (x->depth >= 2) {
    uint32_t parent = x->stack[x->depth - 1];
    tern_bench_xml_node *p = &x->nodes[parent];
    if (p->last_child == NONE) p->first_child = n;
    else x->nodes[p->last_child].next = n;
    p->last_child = n;
  }
  x->cur = n;
  tern_buf_reset(&x->tok);
  tern_buf_reset(&x->text); /* mixed content before a child is not kept */
}

/* The start tag is complete: the element is open. Returns -1 when too deep. */
static int open_element(tern_bench_xml *x) {
  if (x->depth >= TERN_BENCH_XML_MAX_DEPTH) return -1;
  x->stack[x->depth++] = x->cur;
  x->cur = NONE;
  if (x->depth == 1) {
    x->bytes = 0;
    x->state = X_TEXT;
    x->cb(x, TERN_BENCH_XML_STREAM_OPEN, x->stack[0], x->arg);
  }
  return 0;
}

/* The innermost element closes. */
static void close_element(tern_bench_xml *x) {
  uint32_t n = x->stack[--x->depth];
  x->state = X_TEXT;
  if (x->depth == 0) {
    x->cb(x, TERN_BENCH_XML_STREAM_CLOSE, NONE, x->arg);
    return;
  }
  tern_bench_xml_node *nd = &x->nodes[n];
  if (nd->first_child == NONE && x->text.len) {
    nd->text_len = (uint32_t)x->text.len;
    nd->text = str_add(x, x->text.data, x->text.len);
  }
  tern_buf_reset(&x->text);
  if (x->depth == 1) {
    x->bytes = 0;
    x->cb(x, TERN_BENCH_XML_ELEMENT, n, x->arg);
    if (x->text.cap > KEEP_BYTES) tern_buf_free(&x->text);
    if (x->tok.cap > KEEP_BYTES) tern_buf_free(&x->tok);
  }
}

int tern_bench_xml_feed(tern_bench_xml *x, const char *data, size_t len) {
  for (size_t i = 0; i < len; i++) {
    if (x->failed) return -1;
    char c = data[i];
    if (x->depth >= 1 && ++x->bytes > TERN_BENCH_XML_MAX_STANZA) goto fail;
    switch (x->state) {
      case X_TEXT:
        if (c == '<') {
          if (x->ent.len) goto fail;
          x->state = X_LT;
        } else if (x->depth >= 2) {
          if (text_char(x, &x->text, c) < 0) goto fail;
        } else if (!is_space(c) && x->depth == 0) {
          goto fail; /* text outside the stream */
        }
        break;
      case X_LT:
        if (c == '/') {
          x->state = X_ENDNAME;
          tern_buf_reset(&x->tok);
        } else if (c == '?') {
          x->state = X_PI;
        } else if (c == '!') {
          x->state = X_BANG;
          tern_buf_reset(&x->tok);
        } else if (is_space(c) || c == '>' || c == '=' || c == '<') {
          goto fail;
        } else {
          tern_buf_reset(&x->tok);
          tern_buf_putc(&x->tok, c);
          x->state = X_NAME;
        }
        break;
      case X_NAME:
        if (is_space(c) || c == '/' || c == '>') {
          start_element(x);
          if (c == '>') {
            if (open_element(x) < 0) goto fail;
            x->state = X_TEXT;
          } else {
            x->state = c == '/' ? X_SELF : X_ATTRS;
          }
        } else if (c == '<' || c == '=') {
          goto fail;
        } else {
          tern_buf_putc(&x->tok, c);
        }
        break;
      case X_ATTRS:
        if (is_space(c)) break;
        if (c == '/') {
          x->state = X_SELF;
        } else if (c == '>') {
          if (open_element(x) < 0) goto fail;
          x->state = X_TEXT;
        } else if (c == '<' || c == '=' || c == '"' || c == '\'') {
          goto fail;
        } else {
          tern_buf_reset(&x->tok);
          tern_buf_putc(&x->tok, c);
          x->state = X_ANAME;
        }
        break;
      case X_ANAME:
        if (c == '=') x->state = X_AQ;
        else if (is_space(c)) x->state = X_AEQ;
        else if (c == '>' || c == '/' || c == '<' || c == '"' || c == '\'') goto fail;
        else tern_buf_putc(&x->tok, c);
        break;
      case X_AEQ:
        if (c == '=') x->state = X_AQ;
        else if (!is_space(c)) goto fail;
        break;
      case X_AQ:
        if (c == '"' || c == '\'') {
          x->quote = (uint8_t)c;
          /* The name goes in now; the value is read into text (unused inside a start tag). */
          tern_buf_putc(&x->tok, '\0');
          tern_buf_reset(&x->text);
          x->state = X_AVAL;
        } else if (!is_space(c)) {
          goto fail;
        }
        break;
      case X_AVAL:
        if ((uint8_t)c == x->quote && !x->ent.len) {
          uint32_t name = str_add(x, x->tok.data, strlen(x->tok.data));
          attr_add(x, x->cur, name, x->text.data ? x->text.data : "", x->text.len);
          tern_buf_reset(&x->text);
          tern_buf_reset(&x->tok);
          x->state = X_ATTRS;
        } else if (c == '<') {
          goto fail;
        } else if (text_char(x, &x->text, c) < 0) {
          goto fail;
        }
        break;
      case X_SELF:
        if (c != '>') goto fail;
        if (open_element(x) < 0) goto fail;
        if (x->depth == 1) break; /* <stream:stream/>: an empty stream, closes right away */
        close_element(x);
        break;
      case X_ENDNAME:
        if (c == '>' || is_space(c)) {
          if (x->depth == 0) goto fail;
          /* The stream root's node is gone with its arena; any other end tag must match. */
          if (x->depth >= 2) {
            const char *open = x->strs.data + x->nodes[x->stack[x->depth - 1]].name;
            if (x->tok.len != strlen(open) || memcmp(x->tok.data, open, x->tok.len) != 0) goto fail;
          }
          if (c == '>') close_element(x);
          else x->state = X_ENDWS;
        } else {
          tern_buf_putc(&x->tok, c);
        }
        break;
      case X_ENDWS:
        if (c == '>') close_element(x);
        else if (!is_space(c)) goto fail;
        break;
      case X_PI:
        if (c == '?') x->state = X_PI_Q;
        break;
      case X_PI_Q:
        if (c == '>') x->state = X_TEXT;
        else if (c != '?') x->state = X_PI;
        break;
      case X_BANG:
        tern_buf_putc(&x->tok, c);
        if (x->tok.len == 2 && memcmp(x->tok.data, "--", 2) == 0) {
          x->state = X_COMMENT;
          x->sub = 0;
        } else if (x->tok.len == 7 && memcmp(x->tok.data, "[CDATA[", 7) == 0) {
          if (x->depth < 2) goto fail;
          x->state = X_CDATA;
          x->sub = 0;
        } else if (x->tok.len >= 7 || (x->tok.data[0] != '-' && x->tok.data[0] != '[')) {
          goto fail; /* DOCTYPE and friends have no place in XMPP */
        }
        break;
      case X_COMMENT:
        if (c == '-') x->sub++;
        else if (c == '>' && x->sub >= 2) x->state = X_TEXT;
        else x->sub = 0;
        break;
      case X_CDATA:
        if (c == ']') {
          x->sub++;
        } else if (c == '>' && x->sub >= 2) {
          for (int k = 0; k < x->sub - 2; k++) tern_buf_putc(&x->text, ']');
          x->state = X_TEXT;
        } else {
          for (int k = 0; k < x->sub; k++) tern_buf_putc(&x->text, ']');
          x->sub = 0;
          tern_buf_putc(&x->text, c);
        }
        break;
      default:
        goto fail;
    }
  }
  return x->failed ? -1 : 0;
fail:
  x->failed = true;
  return -1;
}

/* ---- the session ---- */

#define NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"
#define NS_SM "urn:xmpp:sm:3"
#define NS_RECEIPTS "urn:xmpp:receipts"
#define NS_REGISTER "jabber:iq:register"
#define NS_STANZAS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_MUC "http://jabber.org/protocol/muc"
#define NS_MUC_USER "http://jabber.org/protocol/muc#user"
#define NS_MUC_OWNER "http://jabber.org/protocol/muc#owner"
#define NS_DATA "jabber:x:data"
#define CFG_ID_PREFIX "cfg:" /* the id of an instant-room configuration is cfg:ROOM */

static void put(tern_bench_xmpp *s, const char *str) { tern_buf_puts(&s->out, str); }

static void put_esc(tern_bench_xmpp *s, const char *str, size_t n) {
  for (size_t i = 0; i < n; i++) {
    switch (str[i]) {
      case '&': put(s, "&amp;"); break;
      case '<': put(s, "&lt;"); break;
      case '>': put(s, "&gt;"); break;
      case '\'': put(s, "&apos;"); break;
      case '"': put(s, "&quot;"); break;
      default: tern_buf_putc(&s->out, str[i]);
    }
  }
}

static void put_escs(tern_bench_xmpp *s, const char *str) { put_esc(s, str, strlen(str)); }

static void base64(tern_buf *out, const uint8_t *in, size_t n) {
  static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    tern_buf_putc(out, t[(v >> 18) & 63]);
    tern_buf_putc(out, t[(v >> 12) & 63]);
    tern_buf_putc(out, i + 1 < n ? t[(v >> 6) & 63] : '=');
    tern_buf_putc(out, i + 2 < n ? t[v & 63] : '=');
  }
}

static void emit(tern_bench_xmpp *s, const tern_bench_xmpp_event *ev) { s->cb(s->arg, ev); }

static void fail(tern_bench_xmpp *s, const char *cond) {
  if (s->state == TERN_BENCH_XS_DONE) return;
  s->state = TERN_BENCH_XS_DONE;
  tern_bench_xmpp_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = TERN_BENCH_XMPP_EV_FAILED;
  ev.cond = cond;
  emit(s, &ev);
}

static void stream_header(tern_bench_xmpp *s) {
  put(s, "<?xml version='1.0'?><stream:stream to='");
  put_escs(s, s->domain);
  put(s, "' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>");
}

static void on_xml(tern_bench_xml *x, tern_bench_xml_ev ev, uint32_t root, void *arg);

void tern_bench_xmpp_init(tern_bench_xmpp *s, tern_bench_xmpp_mode mode, const char *user, const char *password,
                          const char *domain, bool receipts, tern_bench_xmpp_cb cb, void *arg) {
  memset(s, 0, sizeof *s);
  tern_bench_xml_init(&s->xml, on_xml, s);
  s->mode = mode;
  snprintf(s->user, sizeof s->user, "%s", user);
  snprintf(s->password, sizeof s->password, "%s", password);
  snprintf(s->domain, sizeof s->domain, "%s", domain);
  snprintf(s->resource, sizeof s->resource, "bench");
  s->receipts = receipts;
  s->cb = cb;
  s->arg = arg;
  stream_header(s);
}

void tern_bench_xmpp_free(tern_bench_xmpp *s) {
  tern_bench_xml_free(&s->xml);
  tern_buf_free(&s->out);
  tern_free(s->pend);
  memset(s->password, 0, sizeof s->password);
  s->pend = NULL;
}

/* The first child of an <error/> (or <failure/>) that names a condition. */
static const char *condition(const tern_bench_xml *x, uint32_t node) {
  for (uint32_t c = tern_bench_xml_first(x, node); c != NONE; c = tern_bench_xml_next(x, c)) {
    const char *l = tern_bench_xml_local(x, c);
    if (strcmp(l, "text") != 0) return l;
  }
  return "undefined-condition";
}

static const char *stanza_error(const tern_bench_xml *x, uint32_t stanza) {
  uint32_t e = tern_bench_xml_child(x, stanza, "error", NULL);
  return e == NONE ? "undefined-condition" : condition(x, e);
}

static void start_sm(tern_bench_xmpp *s) {
  if (!s->sm_offered) {
    fail(s, "no-stream-management");
    return;
  }
  put(s, "<enable xmlns='" NS_SM "'/>");
  s->state = TERN_BENCH_XS_SM;
}

static void on_features(tern_bench_xmpp *s, uint32_t f) {
  tern_bench_xml *x = &s->xml;
  if (s->state == TERN_BENCH_XS_FEATURES) {
    if (s->mode == TERN_BENCH_XMPP_REGISTER) {
      put(s, "<iq type='set' id='reg'><query xmlns='" NS_REGISTER "'><username>");
      put_escs(s, s->user);
      put(s, "</username><password>");
      put_escs(s, s->password);
      put(s, "</password></query></iq>");
      s->state = TERN_BENCH_XS_REGISTER;
      return;
    }
    uint32_t mechs = tern_bench_xml_child(x, f, "mechanisms", NS_SASL);
    bool plain = false;
    for (uint32_t m = tern_bench_xml_first(x, mechs); m != NONE; m = tern_bench_xml_next(x, m))
      if (strcmp(tern_bench_xml_text(x, m, NULL), "PLAIN") == 0) plain = true;
    if (!plain) {
      fail(s, "no-sasl-plain");
      return;
    }
    tern_buf creds = {0};
    tern_buf_putc(&creds, '\0');
    tern_buf_puts(&creds, s->user);
    tern_buf_putc(&creds, '\0');
    tern_buf_puts(&creds, s->password);
    put(s, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>");
    base64(&s->out, (const uint8_t *)creds.data, creds.len);
    put(s, "</auth>");
    memset(creds.data, 0, creds.len);
    tern_buf_free(&creds);
    s->state = TERN_BENCH_XS_AUTH;
  } else if (s->state == TERN_BENCH_XS_FEATURES2) {
    if (tern_bench_xml_child(x, f, "bind", NS_BIND) == NONE) {
      fail(s, "no-bind");
      return;
    }
    uint32_t sess = tern_bench_xml_child(x, f, "session", NS_SESSION);
    s->session_needed = sess != NONE && tern_bench_xml_child(x, sess, "optional", NULL) == NONE;
    s->sm_offered = tern_bench_xml_child(x, f, "sm", NS_SM) != NONE;
    put(s, "<iq type='set' id='bind'><bind xmlns='" NS_BIND "'><resource>");
    put_escs(s, s->resource);
    put(s, "</resource></bind></iq>");
    s->state = TERN_BENCH_XS_BIND;
  }
}

/* Splits a JID "room@muc/nick" from the MUC service: the room's local part and the nick
 * (resource). Returns false when the JID is not of s->muc. */
static bool room_jid(const tern_bench_xmpp *s, const char *jid, const char **room, size_t *room_len, const char **nick,
                     size_t *nick_len) {
  if (!jid || !s->muc[0]) return false;
  const char *at = strchr(jid, '@');
  if (!at || at == jid) return false;
  const char *dom = at + 1, *slash = strchr(dom, '/');
  size_t dlen = slash ? (size_t)(slash - dom) : strlen(dom);
  if (dlen != strlen(s->muc) || memcmp(dom, s->muc, dlen) != 0) return false;
  *room = jid;
  *room_len = (size_t)(at - jid);
  *nick = slash ? slash + 1 : "";
  *nick_len = slash ? strlen(slash + 1) : 0;
  return true;
}

static void emit_joined(tern_bench_xmpp *s, const char *room, size_t room_len, bool created) {
  tern_bench_xmpp_event ev;
  memset(&ev, 0, sizeof ev);
  ev.type = TERN_BENCH_XMPP_EV_JOINED;
  ev.group = room;
  ev.group_len = room_len;
  ev.created = created;
  emit(s, &ev);
}

static bool has_status(const tern_bench_xml *x, uint32_t xuser, const char *code) {
  for (uint32_t c = tern_bench_xml_first(x, xuser); c != NONE; c = tern_bench_xml_next(x, c)) {
    const char *v = strcmp(tern_bench_xml_local(x, c), "status") == 0 ? tern_bench_xml_attr(x, c, "code") : NULL;
    if (v && strcmp(v, code) == 0) return true;
  }
  return false;
}

/* A presence from a room: our own (status 110) completes a join; an error refuses it. Other
 * occupants' presences only count for the stream-management h. */
static void on_presence(tern_bench_xmpp *s, uint32_t p) {
  tern_bench_xml *x = &s->xml;
  const char *room, *nick;
  size_t room_len, nick_len;
  if (!room_jid(s, tern_bench_xml_attr(x, p, "from"), &room, &room_len, &nick, &nick_len)) return;
  const char *type = tern_bench_xml_attr(x, p, "type");
  if (type && strcmp(type, "error") == 0) {
    tern_bench_xmpp_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TERN_BENCH_XMPP_EV_ERROR;
    ev.group = room;
    ev.group_len = room_len;
    ev.cond = stanza_error(x, p);
    emit(s, &ev);
    return;
  }
  if (type) return; /* unavailable: someone left */
  uint32_t xu = tern_bench_xml_child(x, p, "x", NS_MUC_USER);
  bool self = xu != NONE && has_status(x, xu, "110");
  if (!self) self = nick_len == strlen(s->user) && memcmp(nick, s->user, nick_len) == 0;
  if (!self) return;
  if (xu != NONE && has_status(x, xu, "201")) {
    /* A new room, locked until configured: accept the defaults (an instant room). */
    put(s, "<iq type='set' id='" CFG_ID_PREFIX);
    put_esc(s, room, room_len);
    put(s, "' to='");
    put_esc(s, room, room_len);
    tern_buf_putc(&s->out, '@');
    put_escs(s, s->muc);
    put(s, "'><query xmlns='" NS_MUC_OWNER "'><x xmlns='" NS_DATA "' type='submit'/></query></iq>");
    s->out_h++;
    return;
  }
  emit_joined(s, room, room_len, false);
}

static void on_iq(tern_bench_xmpp *s, uint32_t iq) {
  tern_bench_xml *x = &s->xml;
  const char *type = tern_bench_xml_attr(x, iq, "type");
  const char *id = tern_bench_xml_attr(x, iq, "id");
  if (!type) type = "";
  if (!id) id = "";
  bool result = strcmp(type, "result") == 0, error = strcmp(type, "error") == 0;
  if (s->state == TERN_BENCH_XS_READY && strncmp(id, CFG_ID_PREFIX, strlen(CFG_ID_PREFIX)) == 0 && (result || error)) {
    const char *room = id + strlen(CFG_ID_PREFIX);
    if (result) {
      emit_joined(s, room, strlen(room), true);
    } else {
      tern_bench_xmpp_event ev;
      memset(&ev, 0, sizeof ev);
      ev.type = TERN_BENCH_XMPP_EV_ERROR;
      ev.group = room;
      ev.group_len = strlen(room);
      ev.cond = stanza_error(x, iq);
      emit(s, &ev);
    }
    return;
  }
  if (s->state == TERN_BENCH_XS_REGISTER && strcmp(id, "reg") == 0) {
    if (error && strcmp(stanza_error(x, iq), "conflict") != 0) {
      fail(s, stanza_error(x, iq));
      return;
    }
    s->state = TERN_BENCH_XS_DONE;
    tern_bench_xmpp_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TERN_BENCH_XMPP_EV_REGISTERED;
    ev.conflict = error;
    emit(s, &ev);
    return;
  }
  if (s->state == TERN_BENCH_XS_BIND && strcmp(id, "bind") == 0) {
    if (!result) {
      fail(s, stanza_error(x, iq));
      return;
    }
    if (s->session_needed) {
      put(s, "<iq type='set' id='sess'><session xmlns='" NS_SESSION "'/></iq>");
      s->state = TERN_BENCH_XS_SESSION;
    } else {
      start_sm(s);
    }
    return;
  }
  if (s->state == TERN_BENCH_XS_SESSION && strcmp(id, "sess") == 0) {
    if (!result) {
      fail(s, stanza_error(x, iq));
      return;
    }
    start_sm(s);
    return;
  }
  if (strcmp(type, "get") == 0 || strcmp(type, "set") == 0) {
    /* Every request gets an answer (RFC 6120 8.2.3): pings a result, the rest an error. */
    const char *from = tern_bench_xml_attr(x, iq, "from");
    bool ping = tern_bench_xml_child(x, iq, "ping", "urn:xmpp:ping") != NONE;
    put(s, ping ? "<iq type='result' id='" : "<iq type='error' id='");
    put_escs(s, id);
    if (from) {
      put(s, "' to='");
      put_escs(s, from);
    }
    put(s, ping ? "'/>" : "'><error type='cancel'><service-unavailable xmlns='" NS_STANZAS "'/></error></iq>");
    if (s->state == TERN_BENCH_XS_READY) s->out_h++;
  }
}

static void on_message(tern_bench_xmpp *s, uint32_t m) {
  tern_bench_xml *x = &s->xml;
  const char *type = tern_bench_xml_attr(x, m, "type");
  const char *id = tern_bench_xml_attr(x, m, "id");
  tern_bench_xmpp_event ev;
  memset(&ev, 0, sizeof ev);
  if (type && strcmp(type, "error") == 0) {
    ev.type = TERN_BENCH_XMPP_EV_ERROR;
    ev.id = id;
    ev.cond = stanza_error(x, m);
    const char *room, *nick;
    size_t nick_len;
    if (room_jid(s, tern_bench_xml_attr(x, m, "from"), &room, &ev.group_len, &nick, &nick_len)) ev.group = room;
    emit(s, &ev);
    return;
  }
  if (type && strcmp(type, "groupchat") == 0) {
    /* A room's message: from is room@muc/nick. The subject (no body) is not a message. */
    uint32_t gb = tern_bench_xml_child(x, m, "body", NULL);
    const char *room, *nick;
    size_t room_len, nick_len;
    if (gb == NONE || !room_jid(s, tern_bench_xml_attr(x, m, "from"), &room, &room_len, &nick, &nick_len)) return;
    ev.type = TERN_BENCH_XMPP_EV_MSG;
    ev.group = room;
    ev.group_len = room_len;
    ev.from = nick;
    ev.from_len = nick_len;
    ev.id = id;
    ev.body = tern_bench_xml_text(x, gb, &ev.body_len);
    emit(s, &ev);
    return;
  }
  uint32_t rcv = tern_bench_xml_child(x, m, "received", NS_RECEIPTS);
  if (rcv != NONE) {
    ev.type = TERN_BENCH_XMPP_EV_RECEIPT;
    ev.id = tern_bench_xml_attr(x, rcv, "id");
    if (!ev.id) ev.id = id; /* XEP-0184 1.0 allowed the id on the message only */
    emit(s, &ev);
    return;
  }
  uint32_t body = tern_bench_xml_child(x, m, "body", NULL);
  if (body == NONE) return; /* chat states and the like */
  const char *from = tern_bench_xml_attr(x, m, "from");
  if (!from) from = "";
  const char *at = strchr(from, '@');
  ev.type = TERN_BENCH_XMPP_EV_MSG;
  ev.from = from;
  ev.from_len = at ? (size_t)(at - from) : strlen(from);
  ev.id = id;
  ev.body = tern_bench_xml_text(x, body, &ev.body_len);
  /* The receipt goes first into out, so that it follows this read in the same write. */
  if (s->receipts && id && tern_bench_xml_child(x, m, "request", NS_RECEIPTS) != NONE) {
    char rid[32];
    snprintf(rid, sizeof rid, "r%" PRIu64, ++s->rcpt_ctr);
    put(s, "<message to='");
    put_escs(s, from);
    put(s, "' id='");
    put(s, rid);
    put(s, "'><received xmlns='" NS_RECEIPTS "' id='");
    put_escs(s, id);
    put(s, "'/></message>");
    s->out_h++;
  }
  emit(s, &ev);
}

static void on_ack(tern_bench_xmpp *s, uint32_t h) {
  /* h counts every stanza the server handled; ours awaiting an ack are in order. Compare
   * in uint32 arithmetic so that the count may wrap. */
  s->acked_h = h;
  while (s->pend_len) {
    uint32_t *p = s->pend[s->pend_head];
    if ((int32_t)(h - p[0]) < 0) break;
    uint64_t g = (uint64_t)p[1] | ((uint64_t)p[2] << 32);
    s->pend_head = (s->pend_head + 1) % s->pend_cap;
    s->pend_len--;
    tern_bench_xmpp_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = TERN_BENCH_XMPP_EV_SENT;
    ev.gidx = g;
    emit(s, &ev);
    if (s->state == TERN_BENCH_XS_DONE) return;
  }
}

static void on_element(tern_bench_xmpp *s, uint32_t e) {
  tern_bench_xml *x = &s->xml;
  const char *name = tern_bench_xml_name(x, e);
  const char *local = tern_bench_xml_local(x, e);
  const char *xmlns = tern_bench_xml_attr(x, e, "xmlns");
  if (strcmp(name, "stream:error") == 0 || (strcmp(local, "error") == 0 && strncmp(name, "stream", 6) == 0)) {
    char cond[96];
    snprintf(cond, sizeof cond, "stream:%s", condition(x, e));
    fail(s, cond);
    return;
  }
  if (strcmp(local, "features") == 0) {
    on_features(s, e);
    return;
  }
  if (s->state == TERN_BENCH_XS_AUTH && xmlns && strcmp(xmlns, NS_SASL) == 0) {
    if (strcmp(local, "success") == 0) {
      /* RFC 6120 6.4.6: a new stream on the same connection, parser state forgotten. */
      tern_bench_xml_reset(x);
      stream_header(s);
      s->state = TERN_BENCH_XS_FEATURES2;
    } else if (strcmp(local, "failure") == 0) {
      char cond[96];
      snprintf(cond, sizeof cond, "sasl:%s", condition(x, e));
      fail(s, cond);
    }
    return;
  }
  if (xmlns && strcmp(xmlns, NS_SM) == 0) {
    if (strcmp(local, "enabled") == 0 && s->state == TERN_BENCH_XS_SM) {
      s->out_h = s->in_h = s->acked_h = 0;
      put(s, "<presence/>");
      s->out_h++;
      s->state = TERN_BENCH_XS_READY;
      tern_bench_xmpp_event ev;
      memset(&ev, 0, sizeof ev);
      ev.type = TERN_BENCH_XMPP_EV_READY;
      emit(s, &ev);
    } else if (strcmp(local, "failed") == 0) {
      fail(s, "sm-failed");
    } else if (strcmp(local, "r") == 0) {
      s->need_a = true; /* answered once at the end of this read, covering every <r/> in it */
    } else if (strcmp(local, "a") == 0) {
      const char *h = tern_bench_xml_attr(x, e, "h");
      if (h) on_ack(s, (uint32_t)strtoul(h, NULL, 10));
    }
    return;
  }
  bool stanza = strcmp(local, "message") == 0 || strcmp(local, "presence") == 0 || strcmp(local, "iq") == 0;
  if (!stanza) return;
  if (s->state == TERN_BENCH_XS_READY) s->in_h++;
  if (strcmp(local, "iq") == 0) on_iq(s, e);
  else if (strcmp(local, "message") == 0 && s->state == TERN_BENCH_XS_READY) on_message(s, e);
  else if (strcmp(local, "presence") == 0 && s->state == TERN_BENCH_XS_READY) on_presence(s, e);
}

static void on_xml(tern_bench_xml *x, tern_bench_xml_ev ev, uint32_t root, void *arg) {
  tern_bench_xmpp *s = arg;
  if (s->state == TERN_BENCH_XS_DONE) return;
  if (ev == TERN_BENCH_XML_ELEMENT) {
    on_element(s, root);
  } else if (ev == TERN_BENCH_XML_STREAM_CLOSE) {
    s->state = TERN_BENCH_XS_DONE;
    tern_bench_xmpp_event e;
    memset(&e, 0, sizeof e);
    e.type = TERN_BENCH_XMPP_EV_CLOSED;
    emit(s, &e);
  }
}

int tern_bench_xmpp_feed(tern_bench_xmpp *s, const char *data, size_t len) {
  if (tern_bench_xml_feed(&s->xml, data, len) < 0) {
    fail(s, "xml-not-well-formed");
    return -1;
  }
  if (s->need_a && s->state == TERN_BENCH_XS_READY) {
    char a[80];
    snprintf(a, sizeof a, "<a xmlns='" NS_SM "' h='%u'/>", s->in_h);
    put(s, a);
  }
  s->need_a = false;
  return 0;
}

static void pend_push(tern_bench_xmpp *s, uint64_t gidx);

int tern_bench_xmpp_send_msg(tern_bench_xmpp *s, const char *to, uint64_t gidx, const char *body, size_t len) {
  if (s->state != TERN_BENCH_XS_READY) return -ENOTCONN;
  char id[32];
  snprintf(id, sizeof id, "g%" PRIu64, gidx);
  put(s, "<message to='");
  put_escs(s, to);
  tern_buf_putc(&s->out, '@');
  put_escs(s, s->domain);
  put(s, "' id='");
  put(s, id);
  put(s, "' type='chat'><body>");
  put_esc(s, body, len);
  put(s, "</body><request xmlns='" NS_RECEIPTS "'/></message>");
  pend_push(s, gidx);
  return 0;
}

/* The message just queued (stanza number out_h + 1) awaits the server's ack. */
static void pend_push(tern_bench_xmpp *s, uint64_t gidx) {
  s->out_h++;
  if (s->pend_len == s->pend_cap) {
    /* Grow the ring, unrolling it so that it starts at 0. */
    uint32_t ncap = s->pend_cap ? s->pend_cap * 2 : 64;
    uint32_t(*np)[3] = tern_malloc(ncap * sizeof *np);
    for (uint32_t i = 0; i < s->pend_len; i++) memcpy(np[i], s->pend[(s->pend_head + i) % s->pend_cap], sizeof *np);
    tern_free(s->pend);
    s->pend = np;
    s->pend_cap = ncap;
    s->pend_head = 0;
  }
  uint32_t *p = s->pend[(s->pend_head + s->pend_len) % s->pend_cap];
  p[0] = s->out_h;
  p[1] = (uint32_t)gidx;
  p[2] = (uint32_t)(gidx >> 32);
  s->pend_len++;
  s->since_r++;
}

int tern_bench_xmpp_join(tern_bench_xmpp *s, const char *room, const char *muc_domain) {
  if (s->state != TERN_BENCH_XS_READY) return -ENOTCONN;
  snprintf(s->muc, sizeof s->muc, "%s", muc_domain);
  put(s, "<presence to='");
  put_escs(s, room);
  tern_buf_putc(&s->out, '@');
  put_escs(s, s->muc);
  tern_buf_putc(&s->out, '/');
  put_escs(s, s->user);
  put(s, "'><x xmlns='" NS_MUC "'><history maxstanzas='0'/></x></presence>");
  s->out_h++;
  return 0;
}

int tern_bench_xmpp_send_groupchat(tern_bench_xmpp *s, const char *room, uint64_t gidx, const char *body, size_t len) {
  if (s->state != TERN_BENCH_XS_READY) return -ENOTCONN;
  char id[32];
  snprintf(id, sizeof id, "g%" PRIu64, gidx);
  put(s, "<message to='");
  put_escs(s, room);
  tern_buf_putc(&s->out, '@');
  put_escs(s, s->muc);
  put(s, "' id='");
  put(s, id);
  put(s, "' type='groupchat'><body>");
  put_esc(s, body, len);
  put(s, "</body></message>");
  pend_push(s, gidx);
  return 0;
}

static void ask_ack(tern_bench_xmpp *s) {
  put(s, "<r xmlns='" NS_SM "'/>");
  s->since_r = 0;
  s->last_r_ns = tern_mono_ns();
}

void tern_bench_xmpp_set_acks(tern_bench_xmpp *s, uint32_t every, uint32_t window) {
  s->ack_every = every ? every : 1;
  s->ack_window = window;
}

void tern_bench_xmpp_flush(tern_bench_xmpp *s) {
  if (!s->since_r || s->state != TERN_BENCH_XS_READY) return;
  uint32_t every = s->ack_every ? s->ack_every : 1;
  if (s->since_r >= every || (s->ack_window && s->pend_len >= s->ack_window)) ask_ack(s);
}

void tern_bench_xmpp_flush_idle(tern_bench_xmpp *s, uint64_t now_ns, uint64_t idle_ns) {
  if (!s->since_r || s->state != TERN_BENCH_XS_READY) return;
  if (now_ns - s->last_r_ns >= idle_ns) ask_ack(s);
}

void tern_bench_xmpp_close(tern_bench_xmpp *s) {
  put(s, "</stream:stream>");
  if (s->state != TERN_BENCH_XS_DONE) s->state = TERN_BENCH_XS_DONE;
}

uint32_t tern_bench_xmpp_unacked(const tern_bench_xmpp *s) { return s->pend_len; }
