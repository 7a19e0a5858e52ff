// SASL and TLS against Strom with kafkajs (its own protocol code, in JavaScript).
//
// Run by compat/test_sasl.sh with COMPAT_BOOTSTRAP (SASL_PLAINTEXT), COMPAT_SASL_USER and
// COMPAT_SASL_PASSWORD against a broker it started with PLAIN and SCRAM enabled, and, with
// COMPAT_SASL_SSL_BOOTSTRAP, COMPAT_SSL_BOOTSTRAP and COMPAT_TLS_DIR (ca.pem, other-ca.pem), its
// SASL_SSL and SSL listeners. For PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 over SASL_PLAINTEXT and
// SASL_SSL, and for SSL alone: produce a record and read it back. A wrong password is refused
// with KafkaJSSASLAuthenticationError; a server certificate from an untrusted CA with a
// KafkaJSConnectionError naming the certificate. Prints PASS/FAIL lines as compat_check.py does;
// exits 1 if a check failed.
'use strict';

const fs = require('fs');
const path = require('path');
const { Kafka, logLevel } = require('kafkajs');

const bootstrap = process.env.COMPAT_BOOTSTRAP || '127.0.0.1:9092';
const saslSslBootstrap = process.env.COMPAT_SASL_SSL_BOOTSTRAP || '';
const sslBootstrap = process.env.COMPAT_SSL_BOOTSTRAP || '';
const tlsDir = process.env.COMPAT_TLS_DIR || '';
const username = process.env.COMPAT_SASL_USER || 'alice';
const password = process.env.COMPAT_SASL_PASSWORD || 'alice-secret';
const run = Math.random().toString(16).slice(2, 10);
let failed = 0;

// protocol: SASL_PLAINTEXT, SASL_SSL or SSL (no SASL); trust: the CA file the client trusts.
function client(mechanism, pw, protocol = 'SASL_PLAINTEXT', trust = 'ca') {
  const config = {
    clientId: 'compat-kafkajs',
    brokers: [bootstrap],
    logLevel: logLevel.NOTHING,
    retry: { retries: 2 },
    connectionTimeout: 10000,
  };
  if (protocol !== 'SSL') {
    config.sasl = { mechanism: mechanism.toLowerCase(), username, password: pw };
  }
  if (protocol !== 'SASL_PLAINTEXT') {
    config.brokers = [protocol === 'SSL' ? sslBootstrap : saslSslBootstrap];
    config.ssl = { ca: [fs.readFileSync(path.join(tlsDir, `${trust}.pem`))] };
  }
  return new Kafka(config);
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

async function roundTrip(mechanism, protocol = 'SASL_PLAINTEXT') {
  const topic = `sasl-kjs-${protocol.toLowerCase()}-${mechanism.toLowerCase()}-${run}`;
  const kafka = client(mechanism, password, protocol);
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

async function wrongPassword(protocol = 'SASL_PLAINTEXT') {
  const producer = client('SCRAM-SHA-512', 'wrong', protocol).producer();
  try {
    await producer.connect();
  } catch (e) {
    if (e.name === 'KafkaJSSASLAuthenticationError' || /SASL.*authentication failed/i.test(e.message)) return;
    throw e;
  }
  await producer.disconnect();
  throw new Error('a wrong password was accepted');
}

async function untrusted() {
  const producer = client('PLAIN', password, 'SASL_SSL', 'other-ca').producer();
  try {
    await producer.connect();
  } catch (e) {
    // Node's TLS error (self-signed certificate in chain / unable to verify …), wrapped.
    const why = `${e.message} ${e.cause ? e.cause.message : ''} ${e.originalError || ''}`;
    if (e.name === 'KafkaJSConnectionError' && /certificate/i.test(why)) return;
    if (e.name === 'KafkaJSNumberOfRetriesExceeded' && /certificate/i.test(why)) return;
    throw e;
  }
  await producer.disconnect();
  throw new Error('a server certificate from an untrusted CA was accepted');
}

(async () => {
  console.log(`== kafkajs-sasl against ${bootstrap} ${saslSslBootstrap} ${sslBootstrap}`);
  for (const m of ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']) {
    await check(m, () => roundTrip(m));
  }
  await check('wrong_password', wrongPassword);
  if (saslSslBootstrap && sslBootstrap && tlsDir) {
    await check('ssl', () => roundTrip('', 'SSL'));
    for (const m of ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']) {
      await check(`sasl_ssl/${m}`, () => roundTrip(m, 'SASL_SSL'));
    }
    await check('sasl_ssl/wrong_password', () => wrongPassword('SASL_SSL'));
    await check('sasl_ssl/untrusted_certificate', untrusted);
  }
  process.exit(failed ? 1 : 0);
})();
