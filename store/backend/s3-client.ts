/**
 * One S3 request, signed, over a keep-alive agent, with bounded retries: exponential backoff on
 * 5xx, 429 and SlowDown, timeouts and connection failures; never on another 4xx. Counts requests
 * by kind and bytes both ways. Errors name the store's location and endpoint, never credentials.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { BackendAuthError, BackendError, BackendUnreachableError, NoSuchBucketError } from '../errors.js';
import { EMPTY_SHA256, sha256Hex, signedHeaders, uriEncode, canonicalQuery } from './sigv4.js';
import { s3LocationText, type S3Options } from './s3-options.js';
import { addStats, type BackendStats } from './backend.js';

export interface S3Request {
  /** What the request is for, as stats() counts it: get, range, head, put, create, list, delete... */
  kind: string;
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  /** The object's full key in the bucket; '' for the bucket itself. */
  key: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array;
  /** Where a body is read into, when given (a ranged read): the response is not buffered. */
  into?: Buffer;
}

export interface S3Response {
  status: number;
  headers: IncomingMessage['headers'];
  /** The body, unless it went `into` the caller's buffer. */
  body: Buffer;
  /** Bytes written into `into`. */
  intoBytes: number;
}

export type S3Stats = BackendStats;

const RETRYABLE_ERRNOS = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED', 'CV_S3_TIMEOUT']);

/** The text of an S3 error body's <Code>, or ''. */
export function xmlValue(xml: string, tag: string): string {
  const match = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return match === null ? '' : decodeXml(match[1]!);
}

export function decodeXml(text: string): string {
  return text.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_, entity: string) => {
    switch (entity) {
      case 'lt': return '<';
      case 'gt': return '>';
      case 'amp': return '&';
      case 'quot': return '"';
      case 'apos': return "'";
      default: return String.fromCodePoint(entity[1] === 'x' ? parseInt(entity.slice(2), 16) : parseInt(entity.slice(1), 10));
    }
  });
}

export class S3Client {
  private readonly url: URL;
  private readonly agent: HttpAgent;
  private readonly counters: S3Stats = { requests: {}, retries: 0, bytesSent: 0, bytesReceived: 0 };

  constructor(readonly options: S3Options) {
    this.url = new URL(options.endpoint);
    // Idle keep-alive sockets are unref'd by node's agent: they never hold a finished command open.
    this.agent = this.url.protocol === 'https:'
      ? new HttpsAgent({ keepAlive: true, maxSockets: 16, ...(options.caBundle === null ? {} : { ca: options.caBundle }) })
      : new HttpAgent({ keepAlive: true, maxSockets: 16 });
  }

  get location(): string {
    return s3LocationText(this.options);
  }

  stats(): S3Stats {
    return { ...this.counters, requests: { ...this.counters.requests } };
  }

  /** Counts what another thread's client of the same store did, so that stats() covers the whole command. */
  addStats(stats: S3Stats): void {
    addStats(this.counters, stats);
  }

  close(): void {
    this.agent.destroy();
  }

  /** Sends `req`, retrying what may pass; returns any answer below 500 but 429 for the caller to judge. */
  async send(req: S3Request): Promise<S3Response> {
    for (let attempt = 1; ; attempt++) {
      let failure: unknown;
      try {
        const res = await this.once(req);
        if (!isRetryableStatus(res)) return res;
        failure = res;
      } catch (err) {
        if (!RETRYABLE_ERRNOS.has((err as NodeJS.ErrnoException).code ?? '')) throw this.unexpected(req, err);
        failure = err;
      }
      if (attempt >= this.options.maxAttempts) throw this.exhausted(req, failure, attempt);
      this.counters.retries++;
      await new Promise((resolve) => setTimeout(resolve, this.options.retryDelayMs * 2 ** (attempt - 1)));
    }
  }

  /** The error for an answer the caller did not expect: credentials, bucket, or anything else. */
  failure(req: S3Request, res: S3Response): Error {
    const text = res.body.toString('utf8');
    const s3Code = xmlValue(text, 'Code') || `HTTP ${res.status}`;
    const data = { location: this.location, endpoint: this.options.endpoint, key: req.key, status: res.status, s3Code };
    if (s3Code === 'NoSuchBucket') {
      return new NoSuchBucketError(`${this.location}: no bucket '${this.options.bucket}' at ${this.options.endpoint}; create it or check the --store name and the endpoint`, data);
    }
    if (res.status === 403 || s3Code === 'InvalidAccessKeyId' || s3Code === 'SignatureDoesNotMatch') {
      return new BackendAuthError(`${this.location}: ${this.options.endpoint} refused the credentials (${s3Code}); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the AWS profile`, data);
    }
    return new BackendError(`${this.location}: ${req.kind} of '${req.key}' failed at ${this.options.endpoint} (${s3Code}); stopped`, data);
  }

  private unexpected(req: S3Request, err: unknown): Error {
    const code = (err as NodeJS.ErrnoException).code ?? (err instanceof Error ? err.message : String(err));
    return new BackendError(`${this.location}: ${req.kind} of '${req.key}' failed at ${this.options.endpoint} (${code}); stopped`, { location: this.location, endpoint: this.options.endpoint, key: req.key, code }, err);
  }

  private exhausted(req: S3Request, failure: unknown, attempts: number): Error {
    if (!isResponse(failure)) {
      const code = (failure as NodeJS.ErrnoException).code ?? String(failure);
      const what = code === 'CV_S3_TIMEOUT' ? `no answer within ${this.options.timeoutMs} ms` : code;
      return new BackendUnreachableError(
        `${this.location}: cannot reach ${this.options.endpoint} (${what}, ${attempts} attempts); check the endpoint (--s3-endpoint, AWS_ENDPOINT_URL_S3) and that the server runs`,
        { location: this.location, endpoint: this.options.endpoint, key: req.key, code, attempts },
        failure,
      );
    }
    const error = this.failure(req, failure);
    return error;
  }

  private target(key: string, query: Record<string, string>): { host: string; path: string; search: string } {
    const base = this.url.pathname.replace(/\/$/, '');
    const objectPath = key === '' ? '' : `/${uriEncode(key, true)}`;
    const path = this.options.pathStyle ? `${base}/${this.options.bucket}${objectPath}` : `${base}${objectPath || '/'}`;
    const host = this.options.pathStyle ? this.url.host : `${this.options.bucket}.${this.url.host}`;
    const search = canonicalQuery(query);
    return { host, path, search: search === '' ? '' : `?${search}` };
  }

  private once(req: S3Request): Promise<S3Response> {
    const query = req.query ?? {};
    const { host, path, search } = this.target(req.key, query);
    const body = req.body;
    const headers = signedHeaders({
      method: req.method,
      host,
      path,
      query,
      headers: { ...req.headers, ...(body === undefined ? {} : { 'content-length': String(body.byteLength) }) },
      payloadHash: body === undefined || body.byteLength === 0 ? EMPTY_SHA256 : sha256Hex(body),
      region: this.options.region,
      credentials: this.options.credentials,
      now: new Date(),
    });
    this.counters.requests[req.kind] = (this.counters.requests[req.kind] ?? 0) + 1;
    const send = this.url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const request = send(
        { protocol: this.url.protocol, hostname: this.url.hostname, port: this.url.port, method: req.method, path: path + search, headers, agent: this.agent, timeout: this.options.timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          let intoBytes = 0;
          const into = req.into !== undefined && res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300 ? req.into : undefined;
          res.on('data', (chunk: Buffer) => {
            this.counters.bytesReceived += chunk.byteLength;
            if (into === undefined) chunks.push(chunk);
            else intoBytes += chunk.copy(into, intoBytes);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), intoBytes }));
          res.on('error', reject);
          res.on('aborted', () => reject(Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })));
        },
      );
      request.on('timeout', () => request.destroy(Object.assign(new Error('request timed out'), { code: 'CV_S3_TIMEOUT' })));
      request.on('error', reject);
      if (body !== undefined) this.counters.bytesSent += body.byteLength;
      request.end(body);
    });
  }
}

function isResponse(value: unknown): value is S3Response {
  return typeof value === 'object' && value !== null && 'status' in value && 'body' in value;
}

/** 5xx and throttling pass; SlowDown comes as 503, some servers send it as 400 or 429. */
function isRetryableStatus(res: S3Response): boolean {
  if (res.status >= 500 || res.status === 429) return true;
  return res.status === 400 && /<Code>(SlowDown|RequestTimeout)<\/Code>/.test(res.body.toString('utf8'));
}
