/** AWS Signature Version 4 for S3 requests (header form), as the S3 API reference gives it. */
import { createHash, createHmac } from 'node:crypto';
import type { S3Credentials } from './s3-options.js';

export const EMPTY_SHA256 = createHash('sha256').digest('hex');

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** RFC 3986 encoding, which SigV4 requires ('/' kept in paths). */
export function uriEncode(text: string, keepSlash = false): string {
  const encoded = encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return keepSlash ? encoded.replace(/%2F/g, '/') : encoded;
}

export function canonicalQuery(query: Record<string, string>): string {
  return Object.keys(query)
    .sort()
    .map((key) => `${uriEncode(key)}=${uriEncode(query[key]!)}`)
    .join('&');
}

export interface SignInput {
  method: string;
  host: string;
  /** Already URI-encoded. */
  path: string;
  query: Record<string, string>;
  /** Lower-case names; host and the x-amz- ones are added here. */
  headers: Record<string, string>;
  payloadHash: string;
  region: string;
  credentials: S3Credentials;
  now: Date;
}

const keyCache = new Map<string, Buffer>();

function signingKey(secret: string, day: string, region: string): Buffer {
  const id = `${day}\0${region}\0${secret}`;
  let key = keyCache.get(id);
  if (key === undefined) {
    const hmac = (k: Buffer | string, data: string): Buffer => createHmac('sha256', k).update(data).digest();
    key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), 's3'), 'aws4_request');
    keyCache.clear();
    keyCache.set(id, key);
  }
  return key;
}

/** The headers to send: `input.headers` plus host, x-amz-date, x-amz-content-sha256, the token and Authorization. */
export function signedHeaders(input: SignInput): Record<string, string> {
  const amzDate = input.now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const headers: Record<string, string> = { ...input.headers, host: input.host, 'x-amz-date': amzDate, 'x-amz-content-sha256': input.payloadHash };
  if (input.credentials.sessionToken !== undefined) headers['x-amz-security-token'] = input.credentials.sessionToken;
  const names = Object.keys(headers).sort();
  const canonical = [
    input.method,
    input.path,
    canonicalQuery(input.query),
    names.map((name) => `${name}:${headers[name]!.trim()}\n`).join(''),
    names.join(';'),
    input.payloadHash,
  ].join('\n');
  const scope = `${day}/${input.region}/s3/aws4_request`;
  const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${sha256Hex(Buffer.from(canonical))}`;
  const signature = createHmac('sha256', signingKey(input.credentials.secretAccessKey, day, input.region)).update(toSign).digest('hex');
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${input.credentials.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  return headers;
}
