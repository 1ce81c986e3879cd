/* Unit tests for tern-bench's XMPP client logic (src/bench/xmpp.c): the stream tokenizer and
 * the c2s session, replayed against exchanges recorded from the real peers (Prosody 0.12.3
 * and ejabberd 23.01 on loopback, tern-bench --protocol xmpp --users 2 --one-way --messages 3
 * --window 1, through a recording proxy). Each recording is replayed whole, with every server
 * chunk split at every byte offset, and one byte at a time: the client must write the same
 * stanzas and report the same events however the bytes arrive. Acks (<a h=/>) are compared
 * by their last value only, since the session answers all <r/> of one read with one <a/>. */
#include <errno.h>
#include <stdlib.h>

#include "base/alloc.h"
#include "bench/xmpp.h"
#include "t.h"

#define X96 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

typedef struct rec_chunk {
  char dir;         /* 'S' from the server, 'C' what the client wrote */
  const char *text;
} rec_chunk;

/* ---- the recordings (bytes exactly as they crossed the wire) ---- */

static const rec_chunk pj_sender[] = {
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' from='localhost' xml:lang='en' id='22c78c62-14f2-4da2-8095-a0afdd0c04d4' version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>SCRAM-SHA-256</mechanism></mechanisms><register xmlns='http://jabber.org/features/iq-register'/></stream:features>"},
    {'C', "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHJlY18wAGJlbmNoLXBhc3N3b3Jk</auth>"},
    {'S', "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"},
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' from='localhost' xml:lang='en' id='5edbb8d6-752d-47d9-9e6d-1c3cca62c6d5' version='1.0'><stream:features><c xmlns='http://jabber.org/protocol/caps' ver='KjDRwWDjaXBb2lmR6bk5s54vuAE=' node='http://prosody.im' hash='sha-1'/><sub xmlns='urn:xmpp:features:pre-approval'/><sm xmlns='urn:xmpp:sm:2'><optional/></sm><sm xmlns='urn:xmpp:sm:3'><optional/></sm><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><ver xmlns='urn:xmpp:features:rosterver'/></stream:features>"},
    {'C', "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>"},
    {'S', "<iq id='bind' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>rec_0@localhost/bench</jid></bind></iq>"},
    {'C', "<enable xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<enabled xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<presence/>"},
    {'S', "<presence xml:lang='en' from='rec_0@localhost/bench'/><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<message to='rec_1@localhost' id='g0' type='chat'><body>0:1:" X96 "</body><request xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='1'/>"},
    {'S', "<a xmlns='urn:xmpp:sm:3' h='2'/>"},
    {'S', "<message to='rec_0@localhost/bench' from='rec_1@localhost/bench' id='r1' xml:lang='en'><received id='g0' xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='2'/><message to='rec_1@localhost' id='g1' type='chat'><body>1:2:" X96 "</body><request xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<a xmlns='urn:xmpp:sm:3' h='3'/>"},
    {'S', "<message to='rec_0@localhost/bench' from='rec_1@localhost/bench' id='r2' xml:lang='en'><received id='g1' xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='3'/><message to='rec_1@localhost' id='g2' type='chat'><body>2:3:" X96 "</body><request xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<a xmlns='urn:xmpp:sm:3' h='4'/>"},
    {'S', "<message to='rec_0@localhost/bench' from='rec_1@localhost/bench' id='r3' xml:lang='en'><received id='g2' xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "</stream:stream>"},
    {0, NULL},
};

static const rec_chunk pj_receiver[] = {
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' from='localhost' xml:lang='en' id='c79c3a89-be0e-43b7-969b-b2ab74c1a182' version='1.0'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>SCRAM-SHA-256</mechanism></mechanisms><register xmlns='http://jabber.org/features/iq-register'/></stream:features>"},
    {'C', "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHJlY18xAGJlbmNoLXBhc3N3b3Jk</auth>"},
    {'S', "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"},
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' from='localhost' xml:lang='en' id='002671a5-e0bb-42fc-962d-04dff4967bbe' version='1.0'><stream:features><c xmlns='http://jabber.org/protocol/caps' ver='KjDRwWDjaXBb2lmR6bk5s54vuAE=' node='http://prosody.im' hash='sha-1'/><sub xmlns='urn:xmpp:features:pre-approval'/><sm xmlns='urn:xmpp:sm:2'><optional/></sm><sm xmlns='urn:xmpp:sm:3'><optional/></sm><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><required/></bind><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><ver xmlns='urn:xmpp:features:rosterver'/></stream:features>"},
    {'C', "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>"},
    {'S', "<iq id='bind' type='result'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>rec_1@localhost/bench</jid></bind></iq>"},
    {'C', "<enable xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<enabled xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<presence/>"},
    {'S', "<presence xml:lang='en' from='rec_1@localhost/bench'/><message to='rec_1@localhost' type='chat' from='rec_0@localhost/bench' id='g0' xml:lang='en'><body>0:1:" X96 "</body><request xmlns='urn:xmpp:receipts'/><delay xmlns='urn:xmpp:delay' stamp='2026-11-23T22:33:23Z' from='localhost'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<message to='rec_0@localhost/bench' id='r1'><received xmlns='urn:xmpp:receipts' id='g0'/></message><a xmlns='urn:xmpp:sm:3' h='2'/>"},
    {'S', "<message to='rec_1@localhost' type='chat' from='rec_0@localhost/bench' xml:lang='en' id='g1'><body>1:2:" X96 "</body><request xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<message to='rec_0@localhost/bench' id='r2'><received xmlns='urn:xmpp:receipts' id='g1'/></message><a xmlns='urn:xmpp:sm:3' h='3'/>"},
    {'S', "<message to='rec_1@localhost' type='chat' from='rec_0@localhost/bench' xml:lang='en' id='g2'><body>2:3:" X96 "</body><request xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<message to='rec_0@localhost/bench' id='r3'><received xmlns='urn:xmpp:receipts' id='g2'/></message><a xmlns='urn:xmpp:sm:3' h='4'/>"},
    {'C', "</stream:stream>"},
    {0, NULL},
};

static const rec_chunk ej_register[] = {
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream id='13412686179519477160' version='1.0' xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' xmlns='jabber:client'>"},
    {'S', "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>DIGEST-MD5</mechanism><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-512</mechanism><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>X-OAUTH2</mechanism></mechanisms><register xmlns='http://jabber.org/features/iq-register'/></stream:features>"},
    {'C', "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>rec_0</username><password>bench-password</password></query></iq>"},
    {'S', "<iq xml:lang='en' from='localhost' type='result' id='reg'/>"},
    {'C', "</stream:stream>"},
    {0, NULL},
};

static const rec_chunk ej_sender[] = {
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream id='12308526423661880375' version='1.0' xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' xmlns='jabber:client'>"},
    {'S', "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>DIGEST-MD5</mechanism><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-512</mechanism><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>X-OAUTH2</mechanism></mechanisms><register xmlns='http://jabber.org/features/iq-register'/></stream:features>"},
    {'C', "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHJlY18wAGJlbmNoLXBhc3N3b3Jk</auth>"},
    {'S', "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"},
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream id='10515443692269499848' version='1.0' xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' xmlns='jabber:client'>"},
    {'S', "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><sm xmlns='urn:xmpp:sm:2'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"},
    {'C', "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>"},
    {'S', "<iq type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>rec_0@localhost/bench</jid></bind></iq>"},
    {'C', "<enable xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<enabled xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<presence/><message to='rec_1@localhost' id='g0' type='chat'><body>0:1:" X96 "</body><request xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<a h='2' xmlns='urn:xmpp:sm:3'/><presence xml:lang='en' to='rec_0@localhost/bench' from='rec_0@localhost/bench'/><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='1'/>"},
    {'S', "<message xml:lang='en' to='rec_0@localhost/bench' from='rec_1@localhost/bench' id='r1'><received xmlns='urn:xmpp:receipts' id='g0'/></message>"},
    {'S', "<r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<message to='rec_1@localhost' id='g1' type='chat'><body>1:2:" X96 "</body><request xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='2'/>"},
    {'S', "<a h='3' xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<message xml:lang='en' to='rec_0@localhost/bench' from='rec_1@localhost/bench' id='r2'><received xmlns='urn:xmpp:receipts' id='g1'/></message>"},
    {'S', "<r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='3'/><message to='rec_1@localhost' id='g2' type='chat'><body>2:3:" X96 "</body><request xmlns='urn:xmpp:receipts'/></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<a h='4' xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<message xml:lang='en' to='rec_0@localhost/bench' from='rec_1@localhost/bench' id='r3'><received xmlns='urn:xmpp:receipts' id='g2'/></message>"},
    {'S', "<r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "</stream:stream>"},
    {0, NULL},
};

static const rec_chunk ej_receiver[] = {
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream id='6306362581933568285' version='1.0' xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' xmlns='jabber:client'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>DIGEST-MD5</mechanism><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-512</mechanism><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>X-OAUTH2</mechanism></mechanisms><register xmlns='http://jabber.org/features/iq-register'/></stream:features>"},
    {'C', "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHJlY18xAGJlbmNoLXBhc3N3b3Jk</auth>"},
    {'S', "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"},
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream id='14624872869132829372' version='1.0' xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' xmlns='jabber:client'>"},
    {'S', "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><sm xmlns='urn:xmpp:sm:2'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"},
    {'C', "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>"},
    {'S', "<iq type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>rec_1@localhost/bench</jid></bind></iq>"},
    {'C', "<enable xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<enabled xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<presence/>"},
    {'S', "<presence xml:lang='en' to='rec_1@localhost/bench' from='rec_1@localhost/bench'/><r xmlns='urn:xmpp:sm:3'/><message xml:lang='en' to='rec_1@localhost' from='rec_0@localhost/bench' type='chat' id='g0'><request xmlns='urn:xmpp:receipts'/><body>0:1:" X96 "</body></message>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='1'/><message to='rec_0@localhost/bench' id='r1'><received xmlns='urn:xmpp:receipts' id='g0'/></message>"},
    {'S', "<r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='2'/>"},
    {'S', "<message xml:lang='en' to='rec_1@localhost' from='rec_0@localhost/bench' type='chat' id='g1'><request xmlns='urn:xmpp:receipts'/><body>1:2:" X96 "</body></message>"},
    {'S', "<r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<message to='rec_0@localhost/bench' id='r2'><received xmlns='urn:xmpp:receipts' id='g1'/></message>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='3'/>"},
    {'S', "<message xml:lang='en' to='rec_1@localhost' from='rec_0@localhost/bench' type='chat' id='g2'><request xmlns='urn:xmpp:receipts'/><body>2:3:" X96 "</body></message>"},
    {'S', "<r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<message to='rec_0@localhost/bench' id='r3'><received xmlns='urn:xmpp:receipts' id='g2'/></message><a xmlns='urn:xmpp:sm:3' h='4'/>"},
    {'C', "</stream:stream>"},
    {0, NULL},
};
/* ejabberd 23.01 with bench/peers/ejabberd.yml, group mode: tern-bench --protocol xmpp --users 2
 * --groups 1 --group-size 2 --messages 2 --window 1 (rec_0 creates room rec_g0 and sends g1;
 * rec_1 joins and sends g0; the room reflects each message to its sender too). The room was
 * new, and ejabberd made it an instant room without the 201 status, so the configuration
 * path is in a hand-written exchange below. */
static const rec_chunk ej_muc_creator[] = {
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream id='12479886371128304547' version='1.0' xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' xmlns='jabber:client'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>DIGEST-MD5</mechanism><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-512</mechanism><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>X-OAUTH2</mechanism></mechanisms><register xmlns='http://jabber.org/features/iq-register'/></stream:features>"},
    {'C', "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHJlY18wAGJlbmNoLXBhc3N3b3Jk</auth>"},
    {'S', "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"},
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream id='17494448362033262773' version='1.0' xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' xmlns='jabber:client'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><sm xmlns='urn:xmpp:sm:2'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"},
    {'C', "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>"},
    {'S', "<iq type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>rec_0@localhost/bench</jid></bind></iq>"},
    {'C', "<enable xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<enabled xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<presence/>"},
    {'C', "<presence to='rec_g0@conference.localhost/rec_0'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"},
    {'S', "<presence xml:lang='en' to='rec_0@localhost/bench' from='rec_0@localhost/bench'/><r xmlns='urn:xmpp:sm:3'/><presence to='rec_0@localhost/bench' from='rec_g0@conference.localhost' id='12120525219640086457'><c ver='x5HIfz266VWWWrm7e+tBVD18mCY=' node='http://www.process-one.net/en/ejabberd/' hash='sha-1' xmlns='http://jabber.org/protocol/caps'/></presence><presence xml:lang='en' to='rec_0@localhost/bench' from='rec_g0@conference.localhost/rec_0'><x xmlns='http://jabber.org/protocol/muc#user'><item jid='rec_0@localhost/bench' role='moderator' affiliation='owner'/><status code='110'/></x></presence><message to='rec_0@localhost/bench' from='rec_g0@conference.localhost' type='groupchat'><subject/></message>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='4'/>"},
    {'S', "<presence xml:lang='en' to='rec_0@localhost/bench' from='rec_g0@conference.localhost/rec_1'><x xmlns='http://jabber.org/protocol/muc#user'><item jid='rec_1@localhost/bench' role='participant' affiliation='none'/></x></presence>"},
    {'C', "<message to='rec_g0@conference.localhost' id='g1' type='groupchat'><body>1:1:" X96 "</body></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='5'/>"},
    {'S', "<a h='3' xmlns='urn:xmpp:sm:3'/><message xml:lang='en' to='rec_0@localhost/bench' from='rec_g0@conference.localhost/rec_0' type='groupchat' id='g1'><body>1:1:" X96 "</body></message><message xml:lang='en' to='rec_0@localhost/bench' from='rec_g0@conference.localhost/rec_1' type='groupchat' id='g0'><body>0:1:" X96 "</body></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='7'/>"},
    {'C', "</stream:stream>"},
    {'S', "<presence to='rec_0@localhost/bench' from='rec_g0@conference.localhost/rec_1' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><item jid='rec_1@localhost/bench' role='none' affiliation='none'/></x><status xml:lang='en'>It is not allowed to send error messages to the room. The participant (rec_1) has sent an error message (service-unavailable) and got kicked from the room</status></presence>"},
    {0, NULL},
};

static const rec_chunk ej_muc_member[] = {
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream id='7117925757369691819' version='1.0' xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' xmlns='jabber:client'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>DIGEST-MD5</mechanism><mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-512</mechanism><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>X-OAUTH2</mechanism></mechanisms><register xmlns='http://jabber.org/features/iq-register'/></stream:features>"},
    {'C', "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AHJlY18xAGJlbmNoLXBhc3N3b3Jk</auth>"},
    {'S', "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"},
    {'C', "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>"},
    {'S', "<?xml version='1.0'?><stream:stream id='9933922056378706208' version='1.0' xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' xmlns='jabber:client'>"},
    {'S', "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session><sm xmlns='urn:xmpp:sm:2'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"},
    {'C', "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>"},
    {'S', "<iq type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>rec_1@localhost/bench</jid></bind></iq>"},
    {'C', "<enable xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<enabled xmlns='urn:xmpp:sm:3'/>"},
    {'C', "<presence/>"},
    {'C', "<presence to='rec_g0@conference.localhost/rec_1'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"},
    {'S', "<presence xml:lang='en' to='rec_1@localhost/bench' from='rec_1@localhost/bench'/><r xmlns='urn:xmpp:sm:3'/><presence to='rec_1@localhost/bench' from='rec_g0@conference.localhost' id='6102352051077313405'><c ver='x5HIfz266VWWWrm7e+tBVD18mCY=' node='http://www.process-one.net/en/ejabberd/' hash='sha-1' xmlns='http://jabber.org/protocol/caps'/></presence><presence xml:lang='en' to='rec_1@localhost/bench' from='rec_g0@conference.localhost/rec_0'><x xmlns='http://jabber.org/protocol/muc#user'><item role='moderator' affiliation='owner'/></x></presence><presence xml:lang='en' to='rec_1@localhost/bench' from='rec_g0@conference.localhost/rec_1'><x xmlns='http://jabber.org/protocol/muc#user'><item jid='rec_1@localhost/bench' role='participant' affiliation='none'/><status code='110'/></x></presence><message to='rec_1@localhost/bench' from='rec_g0@conference.localhost' type='groupchat'><subject/></message>"},
    {'C', "<a xmlns='urn:xmpp:sm:3' h='5'/><message to='rec_g0@conference.localhost' id='g0' type='groupchat'><body>0:1:" X96 "</body></message><r xmlns='urn:xmpp:sm:3'/>"},
    {'S', "<message xml:lang='en' to='rec_1@localhost/bench' from='rec_g0@conference.localhost/rec_0' type='groupchat' id='g1'><body>1:1:" X96 "</body></message>"},
    {'S', "<r xmlns='urn:xmpp:sm:3'/><a h='3' xmlns='urn:xmpp:sm:3'/><message xml:lang='en' to='rec_1@localhost/bench' from='rec_g0@conference.localhost/rec_1' type='groupchat' id='g0'><body>0:1:" X96 "</body></message>"},
    /* Added to the recording: the server's next <r/>, so that the last h answered is the same
     * however the chunk before it is split (its <r/> comes before the reflection). */
    {'S', "<r xmlns='urn:xmpp:sm:3'/>"},
    {'C', "</stream:stream>"},
    {0, NULL},
};

/* ---- the harness ---- */

typedef struct capture {
  tern_buf log;  /* one line per event */
  tern_buf out;  /* everything the session wrote */
} capture;

static void on_event(void *arg, const tern_bench_xmpp_event *ev) {
  capture *c = arg;
  switch (ev->type) {
    case TERN_BENCH_XMPP_EV_READY: tern_buf_puts(&c->log, "READY|"); break;
    case TERN_BENCH_XMPP_EV_REGISTERED: tern_buf_puts(&c->log, ev->conflict ? "REGISTERED conflict|" : "REGISTERED|"); break;
    case TERN_BENCH_XMPP_EV_SENT: tern_buf_printf(&c->log, "SENT %llu|", (unsigned long long)ev->gidx); break;
    case TERN_BENCH_XMPP_EV_JOINED:
      tern_buf_printf(&c->log, "JOINED %.*s%s|", (int)ev->group_len, ev->group, ev->created ? " created" : "");
      break;
    case TERN_BENCH_XMPP_EV_MSG:
      if (ev->group) tern_buf_printf(&c->log, "MSG %.*s/", (int)ev->group_len, ev->group);
      else tern_buf_puts(&c->log, "MSG ");
      tern_buf_printf(&c->log, "%.*s %s %.*s/%zu|", (int)ev->from_len, ev->from, ev->id ? ev->id : "-",
                      (int)(ev->body_len < 4 ? ev->body_len : 4), ev->body, ev->body_len);
      break;
    case TERN_BENCH_XMPP_EV_RECEIPT: tern_buf_printf(&c->log, "RECEIPT %s|", ev->id ? ev->id : "-"); break;
    case TERN_BENCH_XMPP_EV_ERROR:
      if (ev->group) tern_buf_printf(&c->log, "ERROR %.*s %s %s|", (int)ev->group_len, ev->group, ev->id ? ev->id : "-", ev->cond);
      else tern_buf_printf(&c->log, "ERROR %s %s|", ev->id ? ev->id : "-", ev->cond);
      break;
    case TERN_BENCH_XMPP_EV_FAILED: tern_buf_printf(&c->log, "FAILED %s|", ev->cond); break;
    case TERN_BENCH_XMPP_EV_CLOSED: tern_buf_puts(&c->log, "CLOSED|"); break;
  }
}

/* Moves what the session wrote into the capture (as the driver would write it out). */
static void drain(tern_bench_xmpp *s, capture *c) {
  tern_buf_append(&c->out, s->out.data, s->out.len);
  tern_buf_reset(&s->out);
}

static void feed(tern_bench_xmpp *s, capture *c, const char *p, size_t n, int mode, size_t split) {
  if (mode == 0) {
    tern_bench_xmpp_feed(s, p, n);
  } else if (mode == 1) {
    size_t k = split < n ? split : n;
    tern_bench_xmpp_feed(s, p, k);
    drain(s, c);
    tern_bench_xmpp_feed(s, p + k, n - k);
  } else {
    for (size_t i = 0; i < n; i++) {
      tern_bench_xmpp_feed(s, p + i, 1);
      drain(s, c);
    }
  }
  drain(s, c);
}

/* Removes every <a xmlns='urn:xmpp:sm:3' h='N'/> from s (in place); returns the last N (or
 * -1) and whether the Ns never went down. */
static long strip_acks(tern_buf *b, bool *monotonic) {
  static const char pre[] = "<a xmlns='urn:xmpp:sm:3' h='";
  long last = -1;
  *monotonic = true;
  char *s = tern_buf_cstr(b);
  char *w = s;
  for (char *r = s; *r;) {
    if (strncmp(r, pre, sizeof pre - 1) == 0) {
      char *end;
      long h = strtol(r + sizeof pre - 1, &end, 10);
      if (h < last) *monotonic = false;
      last = h;
      r = strstr(end, "/>") + 2;
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
  b->len = (size_t)(w - s);
  return last;
}

/* The ids of the messages our client sent in a recorded client chunk, in order: each
 * "<message to='rec_1@localhost' id='gN'" (receipts go to full JIDs, so they do not match). */
static int sends_in(const char *c, uint64_t *ids, int max) {
  int n = 0;
  static const char pre[] = "<message to='rec_1@localhost' id='g";
  for (const char *p = strstr(c, pre); p && n < max; p = strstr(p + 1, pre)) ids[n++] = strtoull(p + sizeof pre - 1, NULL, 10);
  return n;
}

/* MUC operations in a recorded client chunk, done on s as the driver would: each room join
 * ("<presence to='ROOM@conference.localhost/") and each groupchat message (with its body as
 * recorded). Returns how many messages were sent. */
static int muc_ops(tern_bench_xmpp *s, const char *c) {
  static const char join[] = "<presence to='", muc[] = "@conference.localhost", gc[] = "<message to='";
  int sent = 0;
  for (const char *p = strstr(c, join); p; p = strstr(p + 1, join)) {
    const char *at = strstr(p, muc);
    char room[64];
    snprintf(room, sizeof room, "%.*s", (int)(at - p - (sizeof join - 1)), p + sizeof join - 1);
    CHECK_EQ_INT(tern_bench_xmpp_join(s, room, "conference.localhost"), 0);
  }
  for (const char *p = strstr(c, gc); p; p = strstr(p + 1, gc)) {
    const char *at = strstr(p, muc), *id = strstr(p, "id='g"), *b0 = strstr(p, "<body>"), *b1 = strstr(p, "</body>");
    if (!at || !id || !b0 || !b1 || !strstr(p, "type='groupchat'")) continue;
    char room[64];
    snprintf(room, sizeof room, "%.*s", (int)(at - p - (sizeof gc - 1)), p + sizeof gc - 1);
    uint64_t g = strtoull(id + 5, NULL, 10);
    CHECK_EQ_INT(tern_bench_xmpp_send_groupchat(s, room, g, b0 + 6, (size_t)(b1 - b0 - 6)), 0);
    sent++;
  }
  return sent;
}

/* Replays a recording: server chunks are fed (mode 0 whole, 1 split at `split`, 2 byte by
 * byte), our sends happen where the recording shows them. Checks the client's bytes against
 * the recording (acks compared by their last value) and the events against `events`. */
static void replay(const rec_chunk *rec, tern_bench_xmpp_mode mode_, const char *user, const char *events, long final_h,
                   int mode, size_t split) {
  capture c = {0};
  tern_bench_xmpp s;
  tern_bench_xmpp_init(&s, mode_, user, "bench-password", "localhost", true, on_event, &c);
  drain(&s, &c);
  tern_buf want = {0};
  for (const rec_chunk *r = rec; r->text; r++) {
    if (r->dir == 'S') {
      feed(&s, &c, r->text, strlen(r->text), mode, split);
      continue;
    }
    tern_buf_puts(&want, r->text);
    uint64_t ids[8];
    int n = sends_in(r->text, ids, 8);
    for (int i = 0; i < n; i++) {
      char body[128];
      snprintf(body, sizeof body, "%llu:%llu:" X96, (unsigned long long)ids[i], (unsigned long long)ids[i] + 1);
      CHECK_EQ_INT(tern_bench_xmpp_send_msg(&s, "rec_1", ids[i], body, strlen(body)), 0);
    }
    n += muc_ops(&s, r->text);
    if (n) tern_bench_xmpp_flush(&s);
    if (strcmp(r->text, "</stream:stream>") == 0) tern_bench_xmpp_close(&s);
    drain(&s, &c);
  }
  bool mono_got, mono_want;
  long h_got = strip_acks(&c.out, &mono_got), h_rec = strip_acks(&want, &mono_want);
  CHECK(mono_got);
  /* The recorded client sometimes closed before answering the server's last <r/>. */
  CHECK(h_rec <= final_h);
  CHECK_EQ_INT(h_got, final_h);
  if (strcmp(tern_buf_cstr(&c.out), tern_buf_cstr(&want)) != 0) {
    fprintf(stderr, "  mode %d split %zu\n  got:  %s\n  want: %s\n", mode, split, c.out.data, want.data);
    CHECK(!"client bytes differ from the recording");
  }
  if (strcmp(tern_buf_cstr(&c.log), events) != 0) {
    fprintf(stderr, "  mode %d split %zu\n  got:  %s\n  want: %s\n", mode, split, c.log.data, events);
    CHECK(!"events differ");
  }
  CHECK_EQ_INT(tern_bench_xmpp_unacked(&s), 0);
  tern_bench_xmpp_free(&s);
  tern_buf_free(&c.log);
  tern_buf_free(&c.out);
  tern_buf_free(&want);
}

static size_t longest_server_chunk(const rec_chunk *rec) {
  size_t m = 0;
  for (const rec_chunk *r = rec; r->text; r++)
    if (r->dir == 'S' && strlen(r->text) > m) m = strlen(r->text);
  return m;
}

static void replay_all_ways(const rec_chunk *rec, tern_bench_xmpp_mode mode, const char *user, const char *events,
                            long final_h) {
  int before = t_failed_checks;
  replay(rec, mode, user, events, final_h, 0, 0);
  replay(rec, mode, user, events, final_h, 2, 0);
  size_t m = longest_server_chunk(rec);
  for (size_t k = 1; k < m && t_failed_checks == before; k++) replay(rec, mode, user, events, final_h, 1, k);
}

#define SENDER_EVENTS "READY|SENT 0|RECEIPT g0|SENT 1|RECEIPT g1|SENT 2|RECEIPT g2|"
#define RECEIVER_EVENTS "READY|MSG rec_0 g0 0:1:/100|MSG rec_0 g1 1:2:/100|MSG rec_0 g2 2:3:/100|"

/* Both sides end having received 4 stanzas after <enable/>: the sender its own presence and
 * three receipts, the receiver its presence and three messages. */
TEST(prosody_sender) { replay_all_ways(pj_sender, TERN_BENCH_XMPP_LOGIN, "rec_0", SENDER_EVENTS, 4); }
TEST(prosody_receiver) { replay_all_ways(pj_receiver, TERN_BENCH_XMPP_LOGIN, "rec_1", RECEIVER_EVENTS, 4); }
TEST(ejabberd_sender) { replay_all_ways(ej_sender, TERN_BENCH_XMPP_LOGIN, "rec_0", SENDER_EVENTS, 4); }
TEST(ejabberd_receiver) { replay_all_ways(ej_receiver, TERN_BENCH_XMPP_LOGIN, "rec_1", RECEIVER_EVENTS, 4); }
/* Group mode: the creator ends with 7 stanzas after <enable/> (its presence, the room's, its
 * own occupant presence, the subject, the member's presence, the reflection of g1 and the
 * member's g0); the member with 7 too (the same but the creator's presence before its own). */
#define MUC_CREATOR_EVENTS "READY|JOINED rec_g0|SENT 1|MSG rec_g0/rec_0 g1 1:1:/100|MSG rec_g0/rec_1 g0 0:1:/100|"
#define MUC_MEMBER_EVENTS "READY|JOINED rec_g0|MSG rec_g0/rec_0 g1 1:1:/100|SENT 0|MSG rec_g0/rec_1 g0 0:1:/100|"
TEST(ejabberd_muc_creator) { replay_all_ways(ej_muc_creator, TERN_BENCH_XMPP_LOGIN, "rec_0", MUC_CREATOR_EVENTS, 7); }
TEST(ejabberd_muc_member) { replay_all_ways(ej_muc_member, TERN_BENCH_XMPP_LOGIN, "rec_1", MUC_MEMBER_EVENTS, 7); }

TEST(ejabberd_register) { replay_all_ways(ej_register, TERN_BENCH_XMPP_REGISTER, "rec_0", "REGISTERED|", -1); }

/* ---- hand-written exchanges for the paths the recordings do not take ---- */

#define HDR "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' from='localhost' id='x' version='1.0'>"
#define FEAT1 "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"
#define FEAT2 "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"
#define READY_BYTES HDR FEAT1 "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" HDR FEAT2 \
  "<iq type='result' id='bind'/><iq type='result' id='sess'/><enabled xmlns='urn:xmpp:sm:3'/>"

static void script(const char *user, const char *server, const char *events, const char *out_has) {
  capture c = {0};
  tern_bench_xmpp s;
  tern_bench_xmpp_init(&s, TERN_BENCH_XMPP_LOGIN, user, "pw123456", "localhost", true, on_event, &c);
  tern_bench_xmpp_feed(&s, server, strlen(server));
  drain(&s, &c);
  if (strcmp(tern_buf_cstr(&c.log), events) != 0) {
    fprintf(stderr, "  got:  %s\n  want: %s\n", c.log.data, events);
    CHECK(!"events differ");
  }
  if (out_has && !strstr(tern_buf_cstr(&c.out), out_has)) {
    fprintf(stderr, "  output lacks %s\n  output: %s\n", out_has, c.out.data);
    CHECK(!"output");
  }
  tern_bench_xmpp_free(&s);
  tern_buf_free(&c.log);
  tern_buf_free(&c.out);
}

TEST(session_required_and_ping) {
  /* A server that requires the legacy session gets one; a ping is answered; other requests
   * get service-unavailable. */
  script("u", READY_BYTES, "READY|", "<iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>");
  script("u", READY_BYTES "<iq type='get' id='p1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", "READY|",
         "<iq type='result' id='p1' to='localhost'/>");
  script("u", READY_BYTES "<iq type='get' id='v1' from='localhost'><query xmlns='jabber:iq:version'/></iq>", "READY|",
         "<iq type='error' id='v1' to='localhost'><error type='cancel'><service-unavailable");
}

TEST(failures) {
  script("u", HDR FEAT1 "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>",
         "FAILED sasl:not-authorized|", NULL);
  script("u", HDR "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>",
         "FAILED no-sasl-plain|", NULL);
  script("u", HDR FEAT1 "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" HDR
         "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features><iq type='result' id='bind'/>",
         "FAILED no-stream-management|", NULL);
  script("u", READY_BYTES "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>Replaced</text></stream:error></stream:stream>",
         "READY|FAILED stream:conflict|", NULL);
  script("u", READY_BYTES "</stream:stream>", "READY|CLOSED|", NULL);
  script("u", READY_BYTES "<message><body>x</bod></message>", "READY|FAILED xml-not-well-formed|", NULL);
  script("u", READY_BYTES "<message type='error' id='g5' from='v@localhost'><body>x</body><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
         "READY|ERROR g5 service-unavailable|", NULL);
  script("u", READY_BYTES "<failed xmlns='urn:xmpp:sm:3'/>", "READY|FAILED sm-failed|", NULL);
}

TEST(muc_instant_room_and_refusals) {
  /* A new room answers the join with status 201 (locked): the client submits the empty
   * owner form, and the room is joined once the service accepts it. */
  capture c = {0};
  tern_bench_xmpp s;
  tern_bench_xmpp_init(&s, TERN_BENCH_XMPP_LOGIN, "u0", "pw123456", "localhost", true, on_event, &c);
  tern_bench_xmpp_feed(&s, READY_BYTES, strlen(READY_BYTES));
  CHECK_EQ_INT(tern_bench_xmpp_join(&s, "r&1", "muc.localhost"), 0);
  drain(&s, &c);
  CHECK(strstr(tern_buf_cstr(&c.out), "<presence to='r&amp;1@muc.localhost/u0'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>") != NULL);
  const char *p201 = "<presence from='r&amp;1@muc.localhost/u0' to='u0@localhost/bench'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator'/><status code='110'/><status code='201'/></x></presence>";
  tern_bench_xmpp_feed(&s, p201, strlen(p201));
  drain(&s, &c);
  CHECK(strstr(tern_buf_cstr(&c.out), "<iq type='set' id='cfg:r&amp;1' to='r&amp;1@muc.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>") != NULL);
  CHECK_EQ_STR(tern_buf_cstr(&c.log), "READY|");
  const char *res = "<iq type='result' id='cfg:r&amp;1' from='r&amp;1@muc.localhost'/>";
  tern_bench_xmpp_feed(&s, res, strlen(res));
  CHECK_EQ_STR(tern_buf_cstr(&c.log), "READY|JOINED r&1 created|");
  /* Someone else's presence, the room's own, a subject and an unavailable are not events;
   * a message from a room we do not know (another service) is not a group message. */
  const char *noise = "<presence from='r&amp;1@muc.localhost/u7'><x xmlns='http://jabber.org/protocol/muc#user'><item role='participant'/></x></presence>"
                      "<presence from='r&amp;1@muc.localhost'/><message from='r&amp;1@muc.localhost' type='groupchat'><subject>hi</subject></message>"
                      "<presence from='r&amp;1@muc.localhost/u7' type='unavailable'/>"
                      "<message from='r1@other.localhost/u7' type='groupchat' id='g3'><body>3:1:</body></message>";
  tern_bench_xmpp_feed(&s, noise, strlen(noise));
  CHECK_EQ_STR(tern_buf_cstr(&c.log), "READY|JOINED r&1 created|");
  /* A groupchat send: acked by its stanza number (presence 1, join 2, the owner form 3, this 4). */
  CHECK_EQ_INT(tern_bench_xmpp_send_groupchat(&s, "r&1", 9, "9:1:<b>", 7), 0);
  tern_bench_xmpp_flush(&s);
  drain(&s, &c);
  CHECK(strstr(tern_buf_cstr(&c.out), "<message to='r&amp;1@muc.localhost' id='g9' type='groupchat'><body>9:1:&lt;b&gt;</body></message><r xmlns='urn:xmpp:sm:3'/>") != NULL);
  const char *a = "<a xmlns='urn:xmpp:sm:3' h='4'/><message from='r&amp;1@muc.localhost/u7' type='groupchat' id='g9'><body>9:1:&lt;b&gt;</body></message>";
  tern_bench_xmpp_feed(&s, a, strlen(a));
  CHECK_EQ_STR(tern_buf_cstr(&c.log), "READY|JOINED r&1 created|SENT 9|MSG r&1/u7 g9 9:1:/7|");
  tern_bench_xmpp_free(&s);
  tern_buf_free(&c.log);
  tern_buf_free(&c.out);

  /* Refusals name the room: a join (room full), a configuration, a groupchat message. */
  script("u0", READY_BYTES "<presence from='r2@conference.localhost/u0' type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
         "READY|", NULL); /* no join asked: the service is not known yet, so it is no room */
  memset(&c, 0, sizeof c);
  tern_bench_xmpp_init(&s, TERN_BENCH_XMPP_LOGIN, "u0", "pw123456", "localhost", true, on_event, &c);
  tern_bench_xmpp_feed(&s, READY_BYTES, strlen(READY_BYTES));
  tern_bench_xmpp_join(&s, "r2", "conference.localhost");
  const char *refusals = "<presence from='r2@conference.localhost/u0' type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
                         "<iq type='error' id='cfg:r2' from='r2@conference.localhost'><error type='cancel'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                         "<message from='r2@conference.localhost' type='error' id='g4'><error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>";
  tern_bench_xmpp_feed(&s, refusals, strlen(refusals));
  CHECK_EQ_STR(tern_buf_cstr(&c.log), "READY|ERROR r2 - service-unavailable|ERROR r2 - forbidden|ERROR r2 g4 not-acceptable|");
  tern_bench_xmpp_free(&s);
  tern_buf_free(&c.log);
  tern_buf_free(&c.out);
}

TEST(register_conflict) {
  capture c = {0};
  tern_bench_xmpp s;
  tern_bench_xmpp_init(&s, TERN_BENCH_XMPP_REGISTER, "u1", "pw123456", "localhost", false, on_event, &c);
  const char *srv = HDR FEAT1 "<iq type='error' id='reg'><query xmlns='jabber:iq:register'/><error code='409' type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>";
  tern_bench_xmpp_feed(&s, srv, strlen(srv));
  drain(&s, &c);
  CHECK_EQ_STR(tern_buf_cstr(&c.log), "REGISTERED conflict|");
  CHECK(strstr(tern_buf_cstr(&c.out), "<username>u1</username><password>pw123456</password>") != NULL);
  tern_bench_xmpp_free(&s);
  tern_buf_free(&c.log);
  tern_buf_free(&c.out);
  /* Any other error fails the registration. */
  c = (capture){0};
  tern_bench_xmpp_init(&s, TERN_BENCH_XMPP_REGISTER, "u1", "pw123456", "localhost", false, on_event, &c);
  srv = HDR FEAT1 "<iq type='error' id='reg'><error type='auth'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>";
  tern_bench_xmpp_feed(&s, srv, strlen(srv));
  CHECK_EQ_STR(tern_buf_cstr(&c.log), "FAILED not-allowed|");
  tern_bench_xmpp_free(&s);
  tern_buf_free(&c.log);
  tern_buf_free(&c.out);
}

TEST(sasl_plain_encoding_and_escaping) {
  capture c = {0};
  tern_bench_xmpp s;
  /* "\0al&ce\0p<w" base64 = AGFsJmNlAHA8dw== */
  tern_bench_xmpp_init(&s, TERN_BENCH_XMPP_LOGIN, "al&ce", "p<w", "ex'ample", false, on_event, &c);
  CHECK(strstr(tern_buf_cstr(&s.out), "to='ex&apos;ample'") != NULL);
  tern_bench_xmpp_feed(&s, HDR FEAT1, strlen(HDR FEAT1));
  CHECK(strstr(tern_buf_cstr(&s.out), ">AGFsJmNlAHA8dw==</auth>") != NULL);
  tern_bench_xmpp_free(&s);
  tern_buf_free(&c.log);
}

TEST(acks_cover_only_what_they_count) {
  capture c = {0};
  tern_bench_xmpp s;
  tern_bench_xmpp_init(&s, TERN_BENCH_XMPP_LOGIN, "u", "pw123456", "localhost", true, on_event, &c);
  tern_bench_xmpp_feed(&s, READY_BYTES, strlen(READY_BYTES));
  CHECK_EQ_INT(tern_bench_xmpp_send_msg(&s, "v", 10, "10:1:x", 6), 0); /* stanza 2 (presence is 1) */
  CHECK_EQ_INT(tern_bench_xmpp_send_msg(&s, "v", 11, "11:2:x", 6), 0); /* 3 */
  CHECK_EQ_INT(tern_bench_xmpp_send_msg(&s, "v", 12, "12:3:x", 6), 0); /* 4 */
  tern_bench_xmpp_flush(&s);
  tern_bench_xmpp_flush(&s); /* one <r/> per batch */
  const char *o = tern_buf_cstr(&s.out);
  const char *r1 = strstr(o, "<r xmlns='urn:xmpp:sm:3'/>");
  CHECK(r1 != NULL && strstr(r1 + 1, "<r xmlns") == NULL); /* exactly one, after the messages */
  CHECK(r1 && strstr(r1, "<message") == NULL);
  CHECK_EQ_INT(tern_bench_xmpp_unacked(&s), 3);
  tern_bench_xmpp_feed(&s, "<a xmlns='urn:xmpp:sm:3' h='1'/>", 32);
  CHECK_EQ_INT(tern_bench_xmpp_unacked(&s), 3);
  tern_bench_xmpp_feed(&s, "<a xmlns='urn:xmpp:sm:3' h='3'/>", 32);
  CHECK_EQ_INT(tern_bench_xmpp_unacked(&s), 1);
  tern_bench_xmpp_feed(&s, "<a xmlns='urn:xmpp:sm:3' h='4'/>", 32);
  CHECK_EQ_INT(tern_bench_xmpp_unacked(&s), 0);
  CHECK_EQ_STR(tern_buf_cstr(&c.log), "READY|SENT 10|SENT 11|SENT 12|");
  /* Inbound stanzas counted for our <a/>: two messages, then one <r/> answered once. */
  tern_buf_reset(&s.out);
  const char *in = "<message from='v@localhost/b' id='g1'><body>1:1:</body></message>  \n"
                   "<r xmlns='urn:xmpp:sm:3'/><message from='v@localhost/b' id='g2'><body>2:2:</body></message><r xmlns='urn:xmpp:sm:3'/>";
  tern_bench_xmpp_feed(&s, in, strlen(in));
  o = tern_buf_cstr(&s.out);
  CHECK(strstr(o, "h='2'/>") != NULL);
  CHECK(strstr(o, "h='1'/>") == NULL);
  /* No receipt was requested, so none is sent. */
  CHECK(strstr(o, "received") == NULL);
  /* Sending before the session is up is refused. */
  tern_bench_xmpp t2;
  tern_bench_xmpp_init(&t2, TERN_BENCH_XMPP_LOGIN, "u", "pw123456", "localhost", true, on_event, &c);
  CHECK_EQ_INT(tern_bench_xmpp_send_msg(&t2, "v", 1, "x", 1), -ENOTCONN);
  tern_bench_xmpp_free(&t2);
  tern_bench_xmpp_free(&s);
  tern_buf_free(&c.log);
  tern_buf_free(&c.out);
}

/* ---- the tokenizer alone ---- */

typedef struct tok_capture {
  int opens, closes, elements;
  tern_buf dump;
} tok_capture;

static void dump_node(tern_bench_xml *x, uint32_t n, tern_buf *b) {
  tern_buf_printf(b, "(%s", tern_bench_xml_name(x, n));
  const char *id = tern_bench_xml_attr(x, n, "id");
  if (id) tern_buf_printf(b, " id=%s", id);
  size_t len;
  const char *t = tern_bench_xml_text(x, n, &len);
  if (len) tern_buf_printf(b, " \"%s\"", t);
  for (uint32_t c = tern_bench_xml_first(x, n); c != TERN_BENCH_XML_NONE; c = tern_bench_xml_next(x, c)) dump_node(x, c, b);
  tern_buf_putc(b, ')');
}

static void on_tok(tern_bench_xml *x, tern_bench_xml_ev ev, uint32_t root, void *arg) {
  tok_capture *c = arg;
  if (ev == TERN_BENCH_XML_STREAM_OPEN) c->opens++;
  else if (ev == TERN_BENCH_XML_STREAM_CLOSE) c->closes++;
  else {
    c->elements++;
    dump_node(x, root, &c->dump);
  }
}

static const char tok_input[] =
    "<?xml version='1.0' encoding='UTF-8'?>\n<stream:stream xmlns='jabber:client' id=\"s&amp;1\">"
    "<!-- a comment -->  <message id='a&apos;b' from=\"x&quot;y\"><body>&lt;a&amp;b&gt; &#65;&#x42;&#xe9;"
    "<![CDATA[<c>]]]]></body><thread/></message>\r\n"
    "<iq type = 'get' id='q'><query xmlns='jabber:iq:roster'><item jid='a@b'/><item jid='c@d'/></query></iq >"
    "</stream:stream>";

static const char tok_dump[] =
    "(message id=a'b(body \"<a&b> AB\xc3\xa9<c>]]\")(thread))(iq id=q(query(item)(item)))";

TEST(tokenizer_every_split) {
  size_t n = strlen(tok_input);
  for (size_t k = 0; k <= n; k++) {
    tok_capture c = {0};
    tern_bench_xml x;
    tern_bench_xml_init(&x, on_tok, &c);
    CHECK_EQ_INT(tern_bench_xml_feed(&x, tok_input, k), 0);
    CHECK_EQ_INT(tern_bench_xml_feed(&x, tok_input + k, n - k), 0);
    CHECK_EQ_INT(c.opens, 1);
    CHECK_EQ_INT(c.closes, 1);
    CHECK_EQ_INT(c.elements, 2);
    if (strcmp(tern_buf_cstr(&c.dump), tok_dump) != 0) {
      fprintf(stderr, "  split %zu: %s\n", k, c.dump.data);
      CHECK(!"dump");
      k = n;
    }
    tern_bench_xml_free(&x);
    tern_buf_free(&c.dump);
  }
}

TEST(tokenizer_rejects) {
  static const char *const bad[] = {
      "<stream:stream><message></iq></stream:stream>",       /* mismatched end tag */
      "hello<stream:stream>",                                  /* text before the stream */
      "<stream:stream><message id='a'b'/></stream:stream>",    /* broken attribute */
      "<stream:stream><message><body>&bogus;</body></message>", /* unknown entity */
      "<stream:stream><!DOCTYPE x>",                            /* no DTDs */
      "<stream:stream><message id=x/>",                         /* unquoted value */
      "<stream:stream>< message/>",                             /* space after '<' */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tok_capture c = {0};
    tern_bench_xml x;
    tern_bench_xml_init(&x, on_tok, &c);
    if (tern_bench_xml_feed(&x, bad[i], strlen(bad[i])) != -1) {
      fprintf(stderr, "  accepted: %s\n", bad[i]);
      CHECK(!"should fail");
    }
    tern_bench_xml_free(&x);
    tern_buf_free(&c.dump);
  }
  /* Too deep, and too large. */
  tern_bench_xml x;
  tok_capture c = {0};
  tern_bench_xml_init(&x, on_tok, &c);
  tern_bench_xml_feed(&x, "<stream:stream>", 15);
  int rc = 0;
  for (int i = 0; i < 40 && rc == 0; i++) rc = tern_bench_xml_feed(&x, "<a>", 3);
  CHECK_EQ_INT(rc, -1);
  tern_bench_xml_free(&x);
  tern_bench_xml_init(&x, on_tok, &c);
  tern_bench_xml_feed(&x, "<stream:stream><message><body>", 30);
  char *big = tern_malloc(1 << 16);
  memset(big, 'x', 1 << 16);
  rc = 0;
  for (int i = 0; i < 20 && rc == 0; i++) rc = tern_bench_xml_feed(&x, big, 1 << 16);
  CHECK_EQ_INT(rc, -1);
  tern_free(big);
  tern_bench_xml_free(&x);
  tern_buf_free(&c.dump);
}

int main(void) {
  RUN(prosody_sender);
  RUN(prosody_receiver);
  RUN(ejabberd_sender);
  RUN(ejabberd_receiver);
  RUN(ejabberd_register);
  RUN(ejabberd_muc_creator);
  RUN(ejabberd_muc_member);
  RUN(muc_instant_room_and_refusals);
  RUN(session_required_and_ping);
  RUN(failures);
  RUN(register_conflict);
  RUN(sasl_plain_encoding_and_escaping);
  RUN(acks_cover_only_what_they_count);
  RUN(tokenizer_every_split);
  RUN(tokenizer_rejects);
  DONE();
}
