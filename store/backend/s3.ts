/**
 * The S3 backend: a key is the object `<prefix><key>` in the bucket. create is a PUT with
 * If-None-Match: *, list pages through ListObjectsV2, delete batches DeleteObjects, upload is a
 * multipart upload whose parts go out while the caller appends (at most two in flight plus the
 * one being filled), and a staged file lives in a host directory until its commit uploads it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { PRIVATE_FILE_MODE } from '../durable.js';
import { InvalidInputError, isAbsent } from '../errors.js';
import type { Backend, BackendSpec, ObjectInfo, StaleWrite, Staged, Upload } from './backend.js';
import { S3Client, decodeXml, xmlValue, type S3Request, type S3Response, type S3Stats } from './s3-client.js';
import { s3LocationText, type S3Input, type S3Options } from './s3-options.js';

/** DeleteObjects takes at most this many keys. */
const DELETE_BATCH = 1000;
const PARTS_IN_FLIGHT = 2;
const STAGED_PREFIX = '.chunkvault-stage-';

function absent(location: string, key: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`no object '${key}' in ${location}`), { code: 'ENOENT' });
}

function compareKeys(a: ObjectInfo, b: ObjectInfo): number {
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

export class S3Backend implements Backend {
  readonly localDir = null;
  private readonly client: S3Client;

  constructor(readonly options: S3Options) {
    this.client = new S3Client(options);
  }

  get location(): string {
    return s3LocationText(this.options);
  }

  /** Everything resolved, credentials included: a worker thread opens the same backend without the environment. Never printed. */
  get spec(): BackendSpec {
    const { bucket, prefix, credentials, ...rest } = this.options;
    const input: S3Input = { location: `s3://${bucket}/${prefix}`, ...rest, ...credentials };
    return { kind: 's3', options: input };
  }

  stats(): S3Stats {
    return this.client.stats();
  }

  addStats(stats: S3Stats): void {
    this.client.addStats(stats);
  }

  private objectKey(key: string): string {
    if (key === '' || key.startsWith('/') || key.endsWith('/') || key.split('/').some((part) => part === '.' || part === '..' || part === '')) {
      throw new InvalidInputError(`not an object key: '${key}'`, { key });
    }
    return this.options.prefix + key;
  }

  /** Sends `req` and returns the answer when its status is one of `ok`; any other is the error it means. */
  private async expect(req: S3Request, ...ok: number[]): Promise<S3Response> {
    const res = await this.client.send(req);
    if (!ok.includes(res.status)) throw this.client.failure(req, res);
    return res;
  }

  async get(key: string): Promise<Buffer | null> {
    const res = await this.expect({ kind: 'get', method: 'GET', key: this.objectKey(key) }, 200, 404);
    if (res.status === 404) return this.noSuchKey(res, key);
    return res.body;
  }

  async readInto(key: string, offset: number, into: Buffer): Promise<number> {
    const objectKey = this.objectKey(key);
    if (into.byteLength === 0) {
      if ((await this.stat(key)) === null) throw absent(this.location, key);
      return 0;
    }
    const range = `bytes=${offset}-${offset + into.byteLength - 1}`;
    const res = await this.expect({ kind: 'range', method: 'GET', key: objectKey, headers: { range }, into }, 206, 200, 404, 416);
    if (res.status === 404) throw this.noSuchKey(res, key) ?? absent(this.location, key);
    // 416: the range starts at or past the end, as a read at the end of a file returns nothing.
    if (res.status === 416) return 0;
    // A 200 is the whole object, from a server that ignored the range: right only from its start.
    if (res.status === 206 || offset === 0) return res.intoBytes;
    throw this.client.failure({ kind: 'range', method: 'GET', key: objectKey }, { ...res, body: Buffer.from('<Code>RangeIgnored</Code>') });
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    const res = await this.expect({ kind: 'head', method: 'HEAD', key: this.objectKey(key) }, 200, 404);
    if (res.status === 404) return this.bucketExists().then((exists) => (exists ? null : this.throwNoBucket()));
    return { key, size: Number(res.headers['content-length']), mtimeMs: Date.parse(String(res.headers['last-modified'])) };
  }

  /** A 404 names the missing thing in its body: NoSuchKey is absent (null), NoSuchBucket the error it is. */
  private noSuchKey(res: S3Response, key: string): null {
    if (xmlValue(res.body.toString('utf8'), 'Code') !== 'NoSuchKey') throw this.client.failure({ kind: 'get', method: 'GET', key: this.options.prefix + key }, res);
    return null;
  }

  /** HEAD answers carry no body: a 404 of one is checked against the bucket itself. */
  private async bucketExists(): Promise<boolean> {
    const res = await this.expect({ kind: 'head', method: 'HEAD', key: '' }, 200, 404);
    return res.status === 200;
  }

  private throwNoBucket(): never {
    throw this.client.failure({ kind: 'head', method: 'HEAD', key: '' }, { status: 404, headers: {}, body: Buffer.from('<Code>NoSuchBucket</Code>'), intoBytes: 0 });
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const found: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const query: Record<string, string> = { 'list-type': '2', prefix: this.options.prefix + prefix, 'encoding-type': 'url' };
      if (token !== undefined) query['continuation-token'] = token;
      const xml = (await this.expect({ kind: 'list', method: 'GET', key: '', query }, 200)).body.toString('utf8');
      for (const [, entry] of xml.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
        const full = decodeURIComponent(xmlValue(entry!, 'Key').replace(/\+/g, ' '));
        found.push({ key: full.slice(this.options.prefix.length), size: Number(xmlValue(entry!, 'Size')), mtimeMs: Date.parse(xmlValue(entry!, 'LastModified')) });
      }
      token = xmlValue(xml, 'IsTruncated') === 'true' ? xmlValue(xml, 'NextContinuationToken') : undefined;
      if (token === '') throw this.client.failure({ kind: 'list', method: 'GET', key: prefix }, { status: 200, headers: {}, body: Buffer.from('<Code>TruncatedListingWithoutToken</Code>'), intoBytes: 0 });
    } while (token !== undefined);
    return found.sort(compareKeys);
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    await this.expect({ kind: 'put', method: 'PUT', key: this.objectKey(key), body: data }, 200);
  }

  async create(key: string, data: Uint8Array): Promise<boolean> {
    const res = await this.expect({ kind: 'create', method: 'PUT', key: this.objectKey(key), body: data, headers: { 'if-none-match': '*' } }, 200, 412);
    return res.status === 200;
  }

  async delete(keys: string[]): Promise<void> {
    for (let at = 0; at < keys.length; at += DELETE_BATCH) {
      const batch = keys.slice(at, at + DELETE_BATCH).map((key) => this.objectKey(key));
      const body = Buffer.from(`<?xml version="1.0" encoding="UTF-8"?><Delete><Quiet>true</Quiet>${batch.map((key) => `<Object><Key>${escapeXml(key)}</Key></Object>`).join('')}</Delete>`);
      const req: S3Request = { kind: 'delete', method: 'POST', key: '', query: { delete: '' }, body, headers: { 'content-md5': createHash('md5').update(body).digest('base64'), 'content-type': 'application/xml' } };
      const res = await this.expect(req, 200);
      const failed = [...res.body.toString('utf8').matchAll(/<Error>([\s\S]*?)<\/Error>/g)].map(([, error]) => ({ key: xmlValue(error!, 'Key'), code: xmlValue(error!, 'Code') })).filter((error) => error.code !== 'NoSuchKey');
      if (failed.length > 0) throw this.client.failure({ ...req, key: failed[0]!.key }, { ...res, body: Buffer.from(`<Code>${failed[0]!.code}</Code>`) });
    }
  }

  async upload(key: string): Promise<Upload> {
    return new S3Upload(this, this.objectKey(key), this.options.partSize);
  }

  async stage(key: string): Promise<Staged> {
    const objectKey = this.objectKey(key);
    await fs.mkdir(this.options.stageDir, { recursive: true, mode: 0o700 });
    const path = join(this.options.stageDir, `${STAGED_PREFIX}${randomBytes(8).toString('hex')}.tmp`);
    await (await fs.open(path, 'wx', PRIVATE_FILE_MODE)).close();
    return {
      path,
      commit: async () => {
        await this.uploadFile(objectKey, path);
        await fs.rm(path, { force: true });
      },
      discard: () => fs.rm(path, { force: true }),
    };
  }

  /** A file sent part by part: memory stays at a few parts whatever its size. */
  private async uploadFile(objectKey: string, path: string): Promise<void> {
    const upload = new S3Upload(this, objectKey, this.options.partSize);
    const handle = await fs.open(path, 'r');
    try {
      for (;;) {
        const buffer = Buffer.allocUnsafe(this.options.partSize);
        const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, null);
        if (bytesRead === 0) break;
        await upload.append([buffer.subarray(0, bytesRead)]);
      }
      await upload.finish();
    } catch (err) {
      await upload.abort().catch(() => undefined);
      throw err;
    } finally {
      await handle.close();
    }
  }

  async staleWrites(olderThanMs: number): Promise<StaleWrite[]> {
    const before = Date.now() - olderThanMs;
    const found = [...(await this.multipartUploads()), ...(await this.stagedFiles())];
    return found.filter((write) => write.startedMs < before);
  }

  async removeStaleWrites(writes: StaleWrite[]): Promise<void> {
    for (const write of writes) {
      if (write.kind === 'staged') await fs.rm(write.key, { force: true });
      else await this.expect({ kind: 'abortMultipart', method: 'DELETE', key: this.objectKey(write.key), query: { uploadId: write.id } }, 204, 200, 404);
    }
  }

  /** Every multipart upload under the store's prefix that was started and neither completed nor aborted. */
  private async multipartUploads(): Promise<StaleWrite[]> {
    const found: StaleWrite[] = [];
    let markers: Record<string, string> = {};
    for (;;) {
      const query = { uploads: '', prefix: this.options.prefix, 'encoding-type': 'url', ...markers };
      const xml = (await this.expect({ kind: 'listMultipart', method: 'GET', key: '', query }, 200)).body.toString('utf8');
      for (const [, entry] of xml.matchAll(/<Upload>([\s\S]*?)<\/Upload>/g)) {
        const key = decodeURIComponent(xmlValue(entry!, 'Key').replace(/\+/g, ' ')).slice(this.options.prefix.length);
        found.push({ kind: 'upload', key, id: xmlValue(entry!, 'UploadId'), startedMs: Date.parse(xmlValue(entry!, 'Initiated')) });
      }
      if (xmlValue(xml, 'IsTruncated') !== 'true') return found;
      markers = { 'key-marker': decodeURIComponent(xmlValue(xml, 'NextKeyMarker')), 'upload-id-marker': xmlValue(xml, 'NextUploadIdMarker') };
    }
  }

  /** Files this host staged for the store and never committed or discarded (a killed process). */
  private async stagedFiles(): Promise<StaleWrite[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.options.stageDir);
    } catch (err) {
      if (isAbsent(err)) return [];
      throw err;
    }
    const found: StaleWrite[] = [];
    for (const name of names.filter((n) => n.startsWith(STAGED_PREFIX))) {
      const key = join(this.options.stageDir, name);
      const info = await fs.stat(key).catch((err: unknown) => (isAbsent(err) ? null : Promise.reject(err)));
      if (info !== null) found.push({ kind: 'staged', key, id: '', startedMs: info.mtimeMs });
    }
    return found;
  }

  /** For S3Upload: a request whose answer must be one of `ok`. */
  request(req: S3Request, ...ok: number[]): Promise<S3Response> {
    return this.expect(req, ...ok);
  }

  /** For S3Upload: the error an answer means. */
  failureOf(req: S3Request, res: S3Response): Error {
    return this.client.failure(req, res);
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Bytes gather in one part buffer; a full part goes out at once while the next fills, at most
 * PARTS_IN_FLIGHT at a time (append waits for one to finish). The multipart upload starts with
 * the first full part: an object smaller than one part is one PUT at finish.
 */
class S3Upload implements Upload {
  private filling: Buffer;
  private filled = 0;
  private total = 0;
  private uploadId: string | undefined;
  private readonly etags: string[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private failure: unknown;

  constructor(
    private readonly backend: S3Backend,
    private readonly key: string,
    private readonly partSize: number,
  ) {
    this.filling = Buffer.allocUnsafe(partSize);
  }

  get size(): number {
    return this.total;
  }

  async append(buffers: Buffer[]): Promise<void> {
    for (const buffer of buffers) {
      for (let at = 0; at < buffer.byteLength; ) {
        const n = buffer.copy(this.filling, this.filled, at);
        this.filled += n;
        this.total += n;
        at += n;
        if (this.filled === this.partSize) await this.sendPart();
      }
    }
  }

  async finish(): Promise<void> {
    if (this.uploadId === undefined) {
      await this.backend.request({ kind: 'put', method: 'PUT', key: this.key, body: this.filling.subarray(0, this.filled) }, 200);
      return;
    }
    if (this.filled > 0) await this.sendPart();
    await this.drain();
    const parts = this.etags.map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${etag}</ETag></Part>`).join('');
    const req: S3Request = { kind: 'completeMultipart', method: 'POST', key: this.key, query: { uploadId: this.uploadId }, body: Buffer.from(`<CompleteMultipartUpload>${parts}</CompleteMultipartUpload>`) };
    const res = await this.backend.request(req, 200);
    // CompleteMultipartUpload can fail after its 200 has begun: the error is then in the body.
    if (/<Error>/.test(res.body.toString('utf8'))) throw this.backend.failureOf(req, res);
  }

  async abort(): Promise<void> {
    await Promise.allSettled(this.inFlight);
    if (this.uploadId !== undefined) await this.backend.request({ kind: 'abortMultipart', method: 'DELETE', key: this.key, query: { uploadId: this.uploadId } }, 204, 200, 404);
  }

  private async sendPart(): Promise<void> {
    if (this.uploadId === undefined) {
      const res = await this.backend.request({ kind: 'createMultipart', method: 'POST', key: this.key, query: { uploads: '' } }, 200);
      this.uploadId = decodeXml(xmlValue(res.body.toString('utf8'), 'UploadId'));
    }
    while (this.inFlight.size >= PARTS_IN_FLIGHT) await Promise.race(this.inFlight);
    this.throwFailure();
    const body = this.filling.subarray(0, this.filled);
    const index = this.etags.length;
    this.etags.push('');
    const sending: Promise<void> = this.backend
      .request({ kind: 'uploadPart', method: 'PUT', key: this.key, query: { partNumber: String(index + 1), uploadId: this.uploadId }, body }, 200)
      .then((res) => {
        this.etags[index] = String(res.headers.etag);
      })
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => this.inFlight.delete(sending));
    this.inFlight.add(sending);
    this.filling = Buffer.allocUnsafe(this.partSize);
    this.filled = 0;
  }

  private async drain(): Promise<void> {
    await Promise.all(this.inFlight);
    this.throwFailure();
  }

  private throwFailure(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}
