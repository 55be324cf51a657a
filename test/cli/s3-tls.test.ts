/**
 * An https S3 endpoint with a private CA: the CLI trusts it through AWS_CA_BUNDLE, as the AWS CLI
 * does, and refuses it without. The endpoint is a
 * local https server with a self-signed certificate that answers every request as S3 does for a
 * missing bucket: reaching CV_NO_SUCH_BUCKET proves the TLS handshake and the request went through.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { cli, hasCommand, requireCapability, tempDir } from '../helpers/index.js';

if (requireCapability(t, hasCommand('openssl'), 'needs openssl (openssl) to make a certificate')) {
  const dir = await tempDir(t, 'cv-s3tls-');
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const server = createServer({ key: await fs.readFile(key), cert: await fs.readFile(cert) }, (req, res) => {
    req.resume();
    res.writeHead(404, { 'content-type': 'application/xml' });
    res.end(req.method === 'HEAD' ? undefined : '<?xml version="1.0"?><Error><Code>NoSuchBucket</Code></Error>');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const env = { AWS_ACCESS_KEY_ID: 'CVTEST', AWS_SECRET_ACCESS_KEY: 'secret-never-printed', HOME: dir };
  const list = ['list', '--store', 's3://tls-bucket/x', '--s3-endpoint', endpoint];

  t.test('AWS_CA_BUNDLE makes a private CA trusted', async (t) => {
    const result = await cli(list, { ...env, AWS_CA_BUNDLE: cert });
    t.equal(result.code, 2);
    t.equal(result.stderr, `chunkvault: s3://tls-bucket/x: no bucket 'tls-bucket' at ${endpoint}; create it or check the --store name and the endpoint\n`);
  });

  t.test('without it the certificate is refused, in one line', async (t) => {
    const result = await cli(list, env);
    t.equal(result.code, 2);
    t.match(result.stderr, /^chunkvault: s3:\/\/tls-bucket\/x: head of 'x\/chunkvault\.json' failed at https:\/\/127\.0\.0\.1:\d+ \((DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\); stopped\n$/);
    t.notMatch(result.stderr, /secret-never-printed/);
  });

  t.test('an unreadable AWS_CA_BUNDLE is bad input naming the file', async (t) => {
    const result = await cli(list, { ...env, AWS_CA_BUNDLE: join(dir, 'missing.pem') });
    t.equal(result.code, 2);
    t.equal(result.stderr, `chunkvault: AWS_CA_BUNDLE ${join(dir, 'missing.pem')}: cannot read it (ENOENT); point it at a PEM file of the CA certificates\n`);
  });
}
