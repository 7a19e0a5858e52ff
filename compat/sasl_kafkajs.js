// SASL (SASL_PLAINTEXT) against Strom with kafkajs (its own protocol code, in JavaScript).
//
// Run by compat/test_sasl.sh with COMPAT_BOOTSTRAP, COMPAT_SASL_USER and COMPAT_SASL_PASSWORD
// against a broker it started with PLAIN and SCRAM enabled. For PLAIN, SCRAM-SHA-256 and
// SCRAM-SHA-512: produce a record and read it back; a wrong password is refused with
// KafkaJSSASLAuthenticationError. Prints PASS/FAIL lines as compat_check.py does; exits 1 if a
// check failed.
'use strict';

const { Kafka, logLevel } = require('kafkajs');

const bootstrap = process.env.COMPAT_BOOTSTRAP || '127.0.0.1:9092';
const username = process.env.COMPAT_SASL_USER || 'alice';
const password = process.env.COMPAT_SASL_PASSWORD || 'alice-secret';
const run = Math.random().toString(16).slice(2, 10);
let failed = 0;

function client(mechanism, pw) {
  return new Kafka({
    clientId: 'compat-kafkajs',
    brokers: [bootstrap],
    sasl: { mechanism: mechanism.toLowerCase(), username, password: pw },
    logLevel: logLevel.NOTHING,
    retry: { retries: 2 },
    connectionTimeout: 10000,
  });
}

async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    console.log(`PASS kafkajs-sasl/${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL kafkajs-sasl/${name}: ${e && e.name}: ${e && e.message}`);
  }
}

async function roundTrip(mechanism) {
  const topic = `sasl-kjs-${mechanism.toLowerCase()}-${run}`;
  const kafka = client(mechanism, password);
  const producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  await producer.send({ topic, messages: [{ key: 'k', value: `v-${mechanism}` }] });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `g-${topic}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const value = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no record within 20 s')), 20000);
    consumer.run({
      eachMessage: async ({ message }) => {
        clearTimeout(timer);
        resolve(message.value.toString());
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  if (value !== `v-${mechanism}`) throw new Error(`consumed ${value}`);
}

async function wrongPassword() {
  const producer = client('SCRAM-SHA-512', 'wrong').producer();
  try {
    await producer.connect();
  } catch (e) {
    if (e.name === 'KafkaJSSASLAuthenticationError' || /SASL.*authentication failed/i.test(e.message)) return;
    throw e;
  }
  await producer.disconnect();
  throw new Error('a wrong password was accepted');
}

(async () => {
  console.log(`== kafkajs-sasl against ${bootstrap}`);
  for (const m of ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']) {
    await check(m, () => roundTrip(m));
  }
  await check('wrong_password', wrongPassword);
  process.exit(failed ? 1 : 0);
})();
