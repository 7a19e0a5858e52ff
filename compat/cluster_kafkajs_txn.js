// kafkajs transactions across the brokers of a cluster (issue 18), run by compat/cluster.sh.
//
// COMPAT_CLUSTER_BROKERS is "host:port,host:port,host:port" (brokers 1, 2, 3) and
// COMPAT_CLUSTER_RESTART a script taking `kill N` (kill -9 broker N) or `start N` (start it
// again on the same ports). A kafkajs consume-transform-produce worker (a read_committed
// consumer in a group; a transactional producer committing its outputs and the consumer's
// offsets in one transaction) turns every input `i` into `out-i`, ten inputs per transaction.
// After a few transactions the broker coordinating its transactional id (asked with a
// FindCoordinator request of key type 1) is killed; the worker goes on through another
// coordinator; the broker is started again. Then the output topic read read_committed holds
// every input's result (`ctp_coordinator_killed_every_output`), each exactly once
// (`ctp_coordinator_killed_exactly_once`; see compat/known_failures.txt). Any error ends the
// worker's session: the next one's InitProducerId fences the old producer (aborting its open
// transaction) and its consumer resumes from the committed offsets. Prints PASS/FAIL (and
// KNOWN-FAIL/XPASS) lines as compat_check.py does; exits 1 if a check failed.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const { execFileSync } = require('child_process');
const { Kafka, logLevel } = require('kafkajs');

const brokers = (process.env.COMPAT_CLUSTER_BROKERS || '').split(',').filter(Boolean);
const restart = process.env.COMPAT_CLUSTER_RESTART || '';
const run = Math.random().toString(16).slice(2, 10);
const INPUT = `cluster-kjs-in-${run}`;
const OUTPUT = `cluster-kjs-out-${run}`;
const GROUP = `cluster-kjs-ctp-${run}`;
const TXN_ID = `cluster-kjs-txn-${run}`;
const PARTITIONS = 3;
const INPUTS = 200;
const PER_TXN = 10;
const PACE_MS = 300;
const DEADLINE = Date.now() + 150000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function client(id) {
  return new Kafka({
    clientId: `compat-kafkajs-${id}`,
    brokers,
    // COMPAT_KAFKAJS_LOG=WARN (or INFO, DEBUG) shows the client's log.
    logLevel: logLevel[process.env.COMPAT_KAFKAJS_LOG || 'NOTHING'],
    connectionTimeout: 3000,
    requestTimeout: 10000,
    retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 2000 },
  });
}

async function until(what, check) {
  for (;;) {
    if (await check()) return;
    if (Date.now() > DEADLINE) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

// The transaction coordinator of `id` as broker `addr` names it (FindCoordinator v1, key type
// 1): "host:port", or null when the answer carries an error.
function findTxnCoordinator(addr, id) {
  const [host, port] = addr.split(':');
  const str = (s) => {
    const b = Buffer.alloc(2 + Buffer.byteLength(s));
    b.writeInt16BE(Buffer.byteLength(s), 0);
    b.write(s, 2);
    return b;
  };
  const header = Buffer.alloc(8);
  header.writeInt16BE(10, 0); // FindCoordinator
  header.writeInt16BE(1, 2); // v1
  header.writeInt32BE(1, 4); // correlation id
  const body = Buffer.concat([header, str('compat-kafkajs'), str(id), Buffer.from([1])]);
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length, 0);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port: Number(port) });
    socket.setTimeout(5000, () => socket.destroy(new Error('FindCoordinator timed out')));
    let got = Buffer.alloc(0);
    socket.on('connect', () => socket.write(Buffer.concat([size, body])));
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      got = Buffer.concat([got, chunk]);
      if (got.length < 4 || got.length < 4 + got.readInt32BE(0)) return;
      socket.end();
      let at = 8 + 4; // size, correlation id, throttle time
      const error = got.readInt16BE(at);
      at += 2;
      const messageLength = got.readInt16BE(at);
      at += 2 + Math.max(messageLength, 0);
      at += 4; // node id
      const hostLength = got.readInt16BE(at);
      const coordinatorHost = got.toString('utf8', at + 2, at + 2 + hostLength);
      at += 2 + hostLength;
      const coordinatorPort = got.readInt32BE(at);
      resolve(error === 0 ? `${coordinatorHost}:${coordinatorPort}` : null);
    });
  });
}

// Progress of the worker, for the checks.
const progress = { committed: 0, sessions: 0, failures: [], stop: false };

// One session: consumer and transactional producer until an error (or stop).
async function session() {
  const kafka = client(`ctp-${progress.sessions}`);
  const producer = kafka.producer({
    transactionalId: TXN_ID,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: 10000,
  });
  const consumer = kafka.consumer({
    groupId: GROUP,
    readUncommitted: false,
    sessionTimeout: 6000,
    heartbeatInterval: 500,
    maxBytesPerPartition: 256,
    retry: { retries: 0 },
  });
  let failed;
  const ended = new Promise((resolve) => {
    failed = resolve;
  });
  consumer.on(consumer.events.CRASH, (e) => failed(e.payload.error));
  try {
    await producer.connect();
    await consumer.connect();
    await consumer.subscribe({ topics: [INPUT], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset }) => {
        // At most PER_TXN inputs per transaction, paced, so the kill falls mid-way; the rest of
        // the batch is fetched again from the first offset not resolved.
        const messages = batch.messages.slice(0, PER_TXN);
        if (progress.stop || messages.length === 0) return;
        const last = messages[messages.length - 1].offset;
        const txn = await producer.transaction();
        try {
          await txn.send({
            topic: OUTPUT,
            messages: messages.map((m) => ({ value: `out-${m.value.toString()}` })),
          });
          await txn.sendOffsets({
            consumerGroupId: GROUP,
            topics: [
              {
                topic: batch.topic,
                partitions: [{ partition: batch.partition, offset: (BigInt(last) + 1n).toString() }],
              },
            ],
          });
          await txn.commit();
        } catch (e) {
          await txn.abort().catch(() => {});
          failed(e);
          throw e;
        }
        resolveOffset(last);
        progress.committed += 1;
        await sleep(PACE_MS);
      },
    });
    const stopped = (async () => {
      await until('the worker to be stopped', () => progress.stop);
    })();
    const error = await Promise.race([ended, stopped]);
    if (error) throw error;
  } finally {
    await consumer.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
  }
}

async function worker() {
  while (!progress.stop && Date.now() < DEADLINE) {
    progress.sessions += 1;
    try {
      await session();
    } catch (e) {
      progress.failures.push(`${e && e.name}: ${e && e.message}`);
      await sleep(300);
    }
  }
}

// Every value of OUTPUT read read_committed from the beginning, with a quiet second after
// `want` distinct values (so duplicates show up): one value per position (partition, offset),
// since the reader's own group may rebalance (a broker comes back and takes its coordinator
// shard over) and deliver some positions again from its last auto-committed offset, which says
// nothing about the log. An input transformed twice is one value at two positions.
async function readOutput(want) {
  const consumer = client('reader').consumer({
    groupId: `cluster-kjs-reader-${run}`,
    readUncommitted: false,
  });
  const atPosition = new Map();
  const distinct = new Set();
  let lastAt = Date.now();
  await consumer.connect();
  await consumer.subscribe({ topics: [OUTPUT], fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const v = message.value.toString();
      atPosition.set(`${partition}/${message.offset}`, v);
      distinct.add(v);
      lastAt = Date.now();
    },
  });
  await until(`${want} outputs read_committed`, () => distinct.size >= want && Date.now() - lastAt > 1500);
  await consumer.disconnect();
  return [...atPosition.values()];
}

async function produceInputs(producer, from, to) {
  const messages = [];
  for (let i = from; i < to; i += 1) messages.push({ partition: i % PARTITIONS, value: `${i}` });
  await producer.send({ topic: INPUT, messages });
}

// compat/known_failures.txt: `<suite>/<check>  <reason>` lines.
function knownFailures() {
  const known = new Map();
  const file = path.join(__dirname, 'known_failures.txt');
  if (!fs.existsSync(file)) return known;
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const space = line.indexOf(' ');
    known.set(space < 0 ? line : line.slice(0, space), space < 0 ? '' : line.slice(space).trim());
  }
  return known;
}

let failed = 0;

// Prints the check's result line as compat_check.py does; `why` is null when it passed.
function report(name, why, detail, seconds) {
  const known = knownFailures();
  if (why === null) {
    if (known.has(name)) {
      console.log(`XPASS ${name}: listed in compat/known_failures.txt but passed (${seconds}s) -- delete its line so a regression fails CI`);
    } else {
      console.log(`PASS ${name} (${seconds}s): ${detail}`);
    }
  } else if (known.has(name)) {
    console.log(`KNOWN-FAIL ${name}: ${why}; ${detail} (${seconds}s) [known: ${known.get(name)}]`);
  } else {
    failed += 1;
    console.log(`FAIL ${name}: ${why}; ${detail} (${seconds}s)`);
  }
}

async function main() {
  const t0 = Date.now();
  const seconds = () => ((Date.now() - t0) / 1000).toFixed(1);
  const everyOutput = 'kafkajs-cluster/ctp_coordinator_killed_every_output';
  const exactlyOnce = 'kafkajs-cluster/ctp_coordinator_killed_exactly_once';
  let killed = -1;
  let coordinator = null;
  let loop;
  let values;
  try {
    const admin = client('admin').admin();
    await admin.connect();
    await admin.createTopics({
      topics: [
        { topic: INPUT, numPartitions: PARTITIONS },
        { topic: OUTPUT, numPartitions: PARTITIONS },
      ],
    });
    await admin.disconnect();
    const input = client('input').producer({ idempotent: true, maxInFlightRequests: 1 });
    await input.connect();
    await produceInputs(input, 0, INPUTS);
    await input.disconnect();

    loop = worker();
    await until('transactions before the kill', () => progress.committed >= 3);
    coordinator = await findTxnCoordinator(brokers[0], TXN_ID).catch(() => null);
    killed = brokers.indexOf(coordinator);
    if (killed < 0) throw new Error(`transaction coordinator ${coordinator} is none of ${brokers}`);
    const before = progress.committed;
    execFileSync(restart, ['kill', `${killed + 1}`], { stdio: 'inherit' });
    await until('transactions after the kill', () => progress.committed >= before + 3);
    execFileSync(restart, ['start', `${killed + 1}`], { stdio: 'inherit' });
    killed = -1;
    values = await readOutput(INPUTS);
    progress.stop = true;
    await loop;
  } catch (e) {
    progress.stop = true;
    if (killed >= 0) {
      try {
        execFileSync(restart, ['start', `${killed + 1}`], { stdio: 'inherit' });
      } catch (_) {
        // cluster.sh's cleanup stops whatever is left
      }
    }
    if (loop) await Promise.race([loop, sleep(15000)]);
    report(
      everyOutput,
      `${e && e.name}: ${e && e.message}`,
      `${progress.committed} transactions, session errors ${JSON.stringify(progress.failures.slice(-5))}`,
      seconds(),
    );
    // Failed unless compat/known_failures.txt lists the check (report counts only unlisted ones).
    process.exit(failed ? 1 : 0);
  }
  const counts = new Map();
  for (const v of values) counts.set(v, (counts.get(v) || 0) + 1);
  const missing = [];
  for (let i = 0; i < INPUTS; i += 1) if (!counts.has(`out-${i}`)) missing.push(i);
  const twice = [...counts].filter(([, n]) => n > 1).map(([v]) => v);
  const extra = [...counts.keys()].filter((v) => !/^out-\d+$/.test(v) || Number(v.slice(4)) >= INPUTS);
  const detail =
    `${values.length} outputs read_committed, ${progress.committed} transactions, ` +
    `${progress.sessions} sessions (errors ${JSON.stringify(progress.failures.slice(-3))}), ` +
    `coordinator ${coordinator} killed and restarted`;
  report(
    everyOutput,
    missing.length || extra.length ? `missing ${missing.slice(0, 20)}, unexpected ${extra.slice(0, 20)}` : null,
    detail,
    seconds(),
  );
  report(exactlyOnce, twice.length ? `read twice: ${twice.slice(0, 20)}` : null, detail, seconds());
  process.exit(failed ? 1 : 0);
}

main();
