#!/usr/bin/env python3
"""Prints the changes on one replistream topic, one line each.

A third-party consumer of the change events, written with confluent-kafka (librdkafka) and its
schema-registry Avro deserializer instead of the project's own TypeScript stack. It follows
docs/consumers.md: rebuilds events split into record pieces, drops events at or below the last
position seen in their partition, prints a multi-partition command (a barrier) once, from the
copy of its first participant in this topic's database, and shows each new epoch.

    python consume.py replistream.s1.db0 --to-end

Lines (stdout):
    snapshot-begin db=0 p=0 pos=1:0:0 epoch=1 (new: replaces every earlier state)
    snapshot-key db=0 p=2 pos=1:0:3 key=user:1 type=hash ttl=- payload=61B elements=4
    snapshot-end db=0 p=0 pos=1:0:9 keys=8
    command db=0 p=1 pos=1:1520:0 SET k v
    command db=0 p=0 pos=1:1597:0 barrier=0:0,0:3 MSET a 1 b 2
A summary goes to stderr at the end, and before it a line for each step (connecting, partitions
assigned, first record, its schema read): a run that stalls says where. Every call to the broker or
the registry has a deadline, and `kill -USR1 <pid>` prints where each thread is.
"""
from __future__ import annotations

import argparse
import faulthandler
import os
import re
import signal
import sys
import time
from typing import Any, Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

# Avro record name of each event kind (the branches of EventBatch.events).
KINDS = {
    'SnapshotBegin': 'snapshot-begin',
    'SnapshotEnd': 'snapshot-end',
    'SnapshotKey': 'snapshot-key',
    'CommandEvent': 'command',
    'Heartbeat': 'heartbeat',
}
# Events capture writes to every partition: shown once per position, whatever the partition.
BROADCAST = ('snapshot-begin', 'snapshot-end', 'heartbeat')
SHOW_MAX = 120  # longest argument shown, in characters
SHOW_ARGS = 12  # most arguments shown per command
KAFKA_TIMEOUT_S = 30  # to get the topic's metadata from the brokers
# per HTTP request to the schema registry (the client tries a request 4 times): its default is no
# timeout at all, so a request that never gets an answer would stop the consumer forever, silently
REGISTRY_TIMEOUT_S = 10
STALL_REPORT_S = 10  # nothing received for this long while partitions are not read to their end: say so

STARTED = time.monotonic()


def progress(what: str) -> None:
    """One step on stderr, with the seconds since start: when a run stalls, its last line says where."""
    print('[%5.1fs] %s' % (time.monotonic() - STARTED, what), file=sys.stderr, flush=True)


def branch(v: Any) -> tuple[Optional[str], Any]:
    """A union value read with return_record_name: (short record name, value); others as they are."""
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
        return v[0].rsplit('.', 1)[-1], v[1]
    return None, v


def unwrap(v: Any) -> Any:
    return branch(v)[1]


def position(ev: dict) -> tuple[int, int, int]:
    p = ev['pos']
    return (p['epoch'], p['offset'], p['seq'])


def fmt_pos(pos: tuple[int, int, int]) -> str:
    return '%d:%d:%d' % pos


def show(b: bytes) -> str:
    """An argument or key as text: bare when it is plain printable text, quoted and escaped otherwise."""
    cut = b[:SHOW_MAX]
    more = ('…(+%dB)' % (len(b) - len(cut))) if len(b) > len(cut) else ''
    try:
        s = cut.decode('utf-8')
    except UnicodeDecodeError:
        s = None
    if s and all(c.isprintable() and not c.isspace() for c in s) and '"' not in s and '\\' not in s:
        return s + more
    escaped = ''.join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else '\\x%02x' % ord(ch) for ch in cut.decode('latin-1'))
    return '"' + escaped + '"' + more


# ---------------------------------------------------------------------------------------------
# Record pieces (docs/consumers.md, "Record pieces")


def join_lists(acc: list, nxt: list) -> None:
    """The first element of `nxt` continues the last one of `acc` (its bytes appended)."""
    if not nxt:
        return
    if not acc:
        acc.extend(nxt)
        return
    acc[-1] = acc[-1] + nxt[0]
    acc.extend(nxt[1:])


def merge_value(acc: dict, acc_type: str, nxt: dict, continued: bool) -> None:
    """Appends the elements of a piece's typed value to the value rebuilt so far."""
    if acc_type == 'string':
        acc['value'] = acc['value'] + nxt['value']
    elif acc_type in ('list', 'set'):
        field = 'items' if acc_type == 'list' else 'members'
        items = list(nxt[field])
        if continued and items and acc[field]:
            acc[field][-1] = acc[field][-1] + items.pop(0)
        acc[field].extend(items)
    elif acc_type in ('zset', 'hash'):
        entries = list(nxt['entries'])
        if continued and entries and acc['entries']:
            last, first = acc['entries'][-1], entries.pop(0)
            if acc_type == 'zset':
                acc['entries'][-1] = {'member': last['member'] + first['member'], 'score': first['score']}
            else:
                acc['entries'][-1] = {'field': last['field'] + first['field'], 'value': last['value'] + first['value'],
                                      'expireAtMs': first.get('expireAtMs')}
        acc['entries'].extend(entries)
    elif acc_type == 'stream':
        entries = list(nxt['entries'])
        if continued and entries and acc['entries']:
            last = acc['entries'][-1]
            fields = list(last['fields'])
            join_lists(fields, entries.pop(0)['fields'])
            acc['entries'][-1] = {**last, 'fields': fields}
        acc['entries'].extend(entries)
        for g in nxt['groups']:
            have = next((x for x in acc['groups'] if x['name'] == g['name']), None)
            if have is None:
                acc['groups'].append({**g, 'pending': list(g['pending']),
                                      'consumers': [{**c, 'pending': list(c['pending'])} for c in g['consumers']]})
                continue
            have['pending'].extend(g['pending'])
            for c in g['consumers']:
                hc = next((x for x in have['consumers'] if x['name'] == c['name']), None)
                if hc is None:
                    have['consumers'].append({**c, 'pending': list(c['pending'])})
                else:
                    hc['pending'].extend(c['pending'])
    # module: nothing to merge (the payload carries the value)


def copy_value(v: dict) -> dict:
    out = {k: (list(x) if isinstance(x, list) else x) for k, x in v.items()}
    if 'groups' in out:
        out['groups'] = [{**g, 'pending': list(g['pending']),
                          'consumers': [{**c, 'pending': list(c['pending'])} for c in g['consumers']]} for g in out['groups']]
    return out


def assemble(kind: str, parts: list[dict]) -> dict:
    first = parts[0]
    if kind == 'command':
        commands: list[list[bytes]] = []
        for p in parts:
            cmds = list(p['commands'])
            if unwrap(p['piece']).get('continued') and cmds and commands:
                last = list(commands[-1])
                join_lists(last, cmds.pop(0))
                commands[-1] = last
            commands.extend(cmds)
        return {**first, 'commands': commands, 'piece': None}
    payloads = [p['payload'] for p in parts if p['payload'] is not None]
    value: Any = None
    for p in parts:
        name, v = branch(p['value'])
        if v is None:
            continue
        if value is None:
            value = (name, copy_value(v))
        else:
            merge_value(value[1], first['type'], v, bool(unwrap(p['piece']).get('continued')))
    return {**first, 'payload': b''.join(payloads) if payloads else None, 'value': value, 'piece': None}


def same_series(kind: str, first: dict, ev: dict, index: int) -> bool:
    a, b = first['pos'], ev['pos']
    if first['db'] != ev['db'] or a['epoch'] != b['epoch'] or a['offset'] != b['offset']:
        return False
    if kind == 'snapshot-key':
        return b['seq'] == a['seq'] and ev['key'] == first['key']
    return b['seq'] == a['seq'] + index


class Rebuilder:
    """One per partition, fed in offset order: returns whole events, rebuilt from their pieces."""

    def __init__(self) -> None:
        self.kind: Optional[str] = None
        self.parts: list[dict] = []
        self.discarded = 0

    def push(self, kind: str, ev: dict) -> Optional[dict]:
        piece = unwrap(ev.get('piece')) if kind in ('snapshot-key', 'command') else None
        if piece is None:
            self._drop()  # a series cut short: capture restarted in it and sent the event again whole
            return ev
        if piece['index'] == 0:
            self._drop()
            self.kind, self.parts = kind, [ev]
        elif not self.parts:
            self.discarded += 1  # its beginning is before where this consumer started reading
            return None
        elif kind != self.kind or piece['index'] != len(self.parts) or not same_series(kind, self.parts[0], ev, piece['index']):
            self._drop()
            self.discarded += 1
            return None
        else:
            self.parts.append(ev)
        if not piece['last']:
            return None
        whole = assemble(kind, self.parts)
        self.kind, self.parts = None, []
        return whole

    def _drop(self) -> None:
        self.discarded += len(self.parts)
        self.kind, self.parts = None, []


# ---------------------------------------------------------------------------------------------


def describe(kind: str, ev: dict) -> str:
    if kind == 'snapshot-begin':
        return 'epoch=%d source=%s rdb=%d' % (ev['pos']['epoch'], ev.get('sourceVersion') or '?', ev['rdbVersion'])
    if kind == 'snapshot-end':
        return 'keys=%d' % ev['keyCount']
    if kind == 'heartbeat':
        return 'time=%d' % ev['timeMs']
    if kind == 'snapshot-key':
        ttl = ev['expireAtMs']
        out = 'key=%s type=%s ttl=%s' % (show(ev['key']), ev['type'], '-' if ttl is None else ttl)
        if ev['payload'] is not None:
            out += ' payload=%dB' % len(ev['payload'])
        value = unwrap(ev['value'])
        if value is not None:
            if 'entries' in value:
                out += ' elements=%d' % len(value['entries'])
            elif 'items' in value or 'members' in value:
                out += ' elements=%d' % len(value.get('items', value.get('members')))
            elif 'value' in value:
                out += ' bytes=%d' % len(value['value'])
        if ev.get('append'):
            out += ' append'
        return out
    return ' ; '.join(' '.join([show(a) for a in cmd[:SHOW_ARGS]] + (['…(+%d args)' % (len(cmd) - SHOW_ARGS)] if len(cmd) > SHOW_ARGS else []))
                      for cmd in ev['commands'])


def kafka_error(err: KafkaError) -> str:
    return '%s (%s)' % (err.str(), err.name())


def reading(consumer: Consumer, topic: str, partitions: list[int]) -> str:
    """Where each of `partitions` is: next offset to read and the end last seen, from the client's own state."""
    out = []
    for tp in consumer.position([TopicPartition(topic, p) for p in partitions]):
        marks = consumer.get_watermark_offsets(tp, cached=True)  # cached: no request to the broker
        high = marks[1] if marks and marks[1] >= 0 else '?'
        out.append('p%d next=%s end=%s' % (tp.partition, tp.offset if tp.offset >= 0 else '?', high))
    return ', '.join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description='Print the changes of one replistream topic, one line each.')
    ap.add_argument('topic', help='<prefix>.<source-id>.db<N>')
    ap.add_argument('--bootstrap', default=os.environ.get('REPLISTREAM_KAFKA', '127.0.0.1:9092'),
                    help='Kafka bootstrap servers (default: $REPLISTREAM_KAFKA)')
    ap.add_argument('--registry', default=os.environ.get('REPLISTREAM_REGISTRY'),
                    help='Confluent-compatible schema registry URL (default: $REPLISTREAM_REGISTRY)')
    ap.add_argument('--to-end', action='store_true', help='exit once every partition is read to its end')
    ap.add_argument('--heartbeats', action='store_true', help='print heartbeats too')
    ap.add_argument('-X', dest='extra', action='append', default=[], metavar='KEY=VALUE',
                    help='extra librdkafka consumer setting (TLS, SASL …), repeatable')
    args = ap.parse_args()
    if not args.registry:
        ap.error('no registry: pass --registry or set REPLISTREAM_REGISTRY')
    m = re.search(r'\.db(\d+)$', args.topic)
    if not m:
        ap.error('the topic must be named <prefix>.<source-id>.db<N>')
    topic_db = int(m.group(1))
    if hasattr(signal, 'SIGUSR1'):  # not on Windows
        # prints the stack of every thread, even while one is stuck inside the client's C code
        faulthandler.register(signal.SIGUSR1)

    failed: list[str] = []  # why it stops before the end, if it does

    def on_error(err: KafkaError) -> None:
        # Errors of the client as a whole (brokers unreachable, authentication …): poll() never
        # returns them as messages, and librdkafka retries them unless they are fatal.
        print('kafka error: %s%s' % (kafka_error(err), ': stopping' if err.fatal() else ', retrying'), file=sys.stderr, flush=True)
        if err.fatal():
            failed.append(kafka_error(err))

    conf: dict[str, Any] = {
        'bootstrap.servers': args.bootstrap,
        'group.id': 'replistream-example-%d' % os.getpid(),  # required by the client; offsets are never committed
        'enable.auto.commit': False,
        'enable.partition.eof': True,
        'error_cb': on_error,
    }
    for kv in args.extra:
        k, _, v = kv.partition('=')
        conf[k] = v
    consumer = Consumer(conf)
    registry = SchemaRegistryClient({'url': args.registry, 'timeout': REGISTRY_TIMEOUT_S})
    # Capture registers the schema under the subject <topic>-value. Named explicitly: by default the
    # deserializer first asks the registry for the topic's "associations", which only Confluent's
    # registry has (Apicurio answers 404), one more request for nothing.
    deserialize = AvroDeserializer(registry, return_record_name=True,
                                   conf={'subject.name.strategy': topic_subject_name_strategy})

    progress('kafka %s: reading the metadata of %s' % (args.bootstrap, args.topic))
    try:
        meta = consumer.list_topics(args.topic, timeout=KAFKA_TIMEOUT_S).topics.get(args.topic)
    except KafkaException as e:
        print('kafka %s: no metadata in %d s: %s' % (args.bootstrap, KAFKA_TIMEOUT_S, kafka_error(e.args[0])), file=sys.stderr)
        return 1
    if meta is None or meta.error is not None or not meta.partitions:
        print('topic %s: %s' % (args.topic, kafka_error(meta.error) if meta is not None and meta.error else 'not found'), file=sys.stderr)
        return 1
    partitions = sorted(meta.partitions)
    # a partition without a leader cannot be read until the cluster elects one
    leaderless = [p for p in partitions if meta.partitions[p].leader < 0]
    progress('topic %s: %d partitions%s' % (args.topic, len(partitions), ', no leader for %s' % leaderless if leaderless else ''))
    # assign(), not subscribe(): no consumer group to join, so no rebalance to wait for before
    # reading; every partition from its first record
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in partitions])
    progress('assigned partitions %s, reading from the first record' % ','.join(map(str, partitions)))

    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    rebuilders = {p: Rebuilder() for p in partitions}
    last_pos: dict[int, tuple[int, int, int]] = {}  # per partition: the highest position processed
    shown_broadcast: set[tuple[str, tuple[int, int, int]]] = set()
    at_end: set[int] = set()
    epoch = 0
    counts = {'events': 0, 'printed': 0, 'duplicates': 0, 'barrier-copies': 0}
    decoded_any = False
    last_received = time.monotonic()
    try:
        while not stopping and not failed:
            msg = consumer.poll(0.5)
            if msg is None:
                # Quiet while partitions are not read to their end yet: say what it waits for. (Once
                # all were, a quiet topic is just a topic nobody writes to.)
                if time.monotonic() - last_received >= STALL_REPORT_S and not at_end.issuperset(partitions):
                    waiting = [p for p in partitions if p not in at_end]
                    progress('nothing received for %d s; not at the end yet: %s'
                             % (time.monotonic() - last_received, reading(consumer, args.topic, waiting)))
                    last_received = time.monotonic()
                continue
            last_received = time.monotonic()
            err = msg.error()
            if err:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition())
                    if args.to_end and at_end.issuperset(partitions):
                        progress('every partition read to its end')
                        break
                    continue
                failed.append(kafka_error(err))
                print('kafka error, %s[%s]: %s: stopping' % (msg.topic(), msg.partition(), kafka_error(err)), file=sys.stderr)
                break
            p = msg.partition()
            if not decoded_any:
                progress('first record (p=%d offset=%d): reading its schema from the registry %s' % (p, msg.offset(), args.registry))
            try:
                batch = deserialize(msg.value(), SerializationContext(msg.topic(), MessageField.VALUE))
            except Exception as e:  # the registry unreachable or refusing, or a record that is not ours
                failed.append('record not decoded')
                print('%s[%d] offset %d: not decoded (schema registry %s): %s: %s'
                      % (msg.topic(), p, msg.offset(), args.registry, type(e).__name__, e), file=sys.stderr)
                break
            if not decoded_any:
                progress('first record decoded')
                decoded_any = True
            for item in batch['events']:
                name, ev = branch(item)
                kind = KINDS.get(name or '')
                if kind is None:
                    print('unknown event %r at %s[%d]@%d: skipped' % (name, msg.topic(), p, msg.offset()), file=sys.stderr)
                    continue
                counts['events'] += 1
                whole = rebuilders[p].push(kind, ev)
                if whole is None:
                    continue
                pos = position(whole)
                if p in last_pos and pos <= last_pos[p]:
                    counts['duplicates'] += 1  # delivered again (rebalance, capture restart): seen already
                    continue
                last_pos[p] = pos
                line = '%s db=%d p=%d pos=%s ' % (kind, whole['db'], p, fmt_pos(pos))
                if kind in BROADCAST:
                    if (kind, pos) in shown_broadcast or (kind == 'heartbeat' and not args.heartbeats):
                        continue
                    if len(shown_broadcast) > 100_000:
                        shown_broadcast.clear()
                    shown_broadcast.add((kind, pos))
                    if kind == 'snapshot-begin' and pos[0] > epoch:
                        epoch = pos[0]
                        line += describe(kind, whole) + ' (new: replaces every earlier state)'
                        print(line, flush=True)
                        counts['printed'] += 1
                        continue
                elif kind == 'command' and whole['participants']:
                    mine = [x for x in whole['participants'] if x['db'] == topic_db]
                    if not mine or mine[0]['partition'] != p:
                        counts['barrier-copies'] += 1  # a position marker: its first participant's copy is the one shown
                        continue
                    line += 'barrier=%s ' % ','.join('%d:%d' % (x['db'], x['partition']) for x in whole['participants'])
                print(line + describe(kind, whole), flush=True)
                counts['printed'] += 1
    finally:
        progress('closing the consumer')
        consumer.close()
    discarded = sum(r.discarded for r in rebuilders.values())
    print('summary: %s pieces-discarded=%d' % (' '.join('%s=%d' % kv for kv in counts.items()), discarded), file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
