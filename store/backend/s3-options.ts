/**
 * Where an S3 store is and how to reach it: `s3://BUCKET/PREFIX` plus endpoint, region, path
 * style and credentials, from explicit options first, then the variables and files the AWS CLI
 * and restic read (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS_REGION, AWS_DEFAULT_REGION,
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, ~/.aws/credentials
 * and ~/.aws/config or AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidInputError, isAbsent } from '../errors.js';

export interface S3Location {
  bucket: string;
  /** '' or ending in '/': every key of the store is below it. */
  prefix: string;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** What the backend runs on: every field resolved, plain data (a worker thread gets it as it is). */
export interface S3Options extends S3Location {
  endpoint: string;
  region: string;
  pathStyle: boolean;
  credentials: S3Credentials;
  /** Where staged files are written before they are uploaded. */
  stageDir: string;
  /** Bytes of each part of a multipart upload (8-16 MiB: at most three in memory per upload). */
  partSize: number;
  /** Tries of one request before its failure stands (5xx, 429, timeouts, resets). */
  maxAttempts: number;
  /** The first retry's delay; each next one doubles it. */
  retryDelayMs: number;
  /** A request that sends or receives nothing for this long fails (and is retried). */
  timeoutMs: number;
  /** PEM certificates that alone are trusted for an https endpoint (AWS_CA_BUNDLE, as the AWS CLI reads it); null: node's own. */
  caBundle: string | null;
}

/** What a caller may say; anything left out comes from the environment and the AWS files. */
export type S3Input = { location: string } & Partial<Omit<S3Options, 'bucket' | 'prefix' | 'credentials'>> & Partial<S3Credentials> & { profile?: string };

const BUCKET_PATTERN = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

export function parseS3Location(location: string): S3Location {
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(location);
  if (match === null) throw new InvalidInputError(`--store '${location}' is not an s3:// location: write s3://BUCKET/PREFIX`, { location });
  const bucket = match[1]!;
  if (!BUCKET_PATTERN.test(bucket)) throw new InvalidInputError(`--store '${location}': '${bucket}' is not a bucket name (3-63 lower-case letters, digits, '.' or '-')`, { location });
  const path = (match[2] ?? '').replace(/\/+$/, '');
  if (path !== '' && path.split('/').some((part) => part === '' || part === '.' || part === '..')) {
    throw new InvalidInputError(`--store '${location}': the prefix must not have empty, '.' or '..' parts`, { location });
  }
  return { bucket, prefix: path === '' ? '' : `${path}/` };
}

type Ini = Map<string, Map<string, string>>;

/** The sections of an AWS credentials or config file; an absent file has none. */
function readIni(path: string): Ini {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (isAbsent(err)) return new Map();
    throw new InvalidInputError(`cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { path }, err);
  }
  const sections: Ini = new Map();
  let current: Map<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s+|\s+$/g, '');
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[\s*(.+?)\s*\]$/.exec(line);
    if (section) {
      current = sections.get(section[1]!) ?? new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const pair = /^([^=]+?)\s*=\s*(.*)$/.exec(line);
    // Indented lines are nested settings (`s3 =` then `  addressing_style = path`): kept flat under the profile.
    if (pair && current) current.set(pair[1]!.toLowerCase(), pair[2]!);
  }
  return sections;
}

interface Profile {
  credentials: Map<string, string>;
  config: Map<string, string>;
}

function readProfile(name: string, env: NodeJS.ProcessEnv): Profile {
  const aws = join(env.HOME ?? homedir(), '.aws');
  const credentials = readIni(env.AWS_SHARED_CREDENTIALS_FILE ?? join(aws, 'credentials'));
  const config = readIni(env.AWS_CONFIG_FILE ?? join(aws, 'config'));
  return {
    credentials: credentials.get(name) ?? new Map(),
    config: config.get(name === 'default' ? 'default' : `profile ${name}`) ?? new Map(),
  };
}

function credentialsFrom(input: S3Input, env: NodeJS.ProcessEnv, profile: Profile, profileName: string): S3Credentials {
  const pick = (explicit: string | undefined, variable: string, setting: string): string | undefined =>
    explicit ?? env[variable] ?? profile.credentials.get(setting) ?? profile.config.get(setting);
  const fromEnv = input.accessKeyId === undefined && env.AWS_ACCESS_KEY_ID !== undefined;
  const accessKeyId = pick(input.accessKeyId, 'AWS_ACCESS_KEY_ID', 'aws_access_key_id');
  const secretAccessKey = pick(input.secretAccessKey, 'AWS_SECRET_ACCESS_KEY', 'aws_secret_access_key');
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new InvalidInputError(
      `--store ${input.location}: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or aws_access_key_id and aws_secret_access_key in profile '${profileName}' of ~/.aws/credentials`,
      { location: input.location, profile: profileName },
    );
  }
  // A session token belongs to the keys it came with: an environment token is not mixed with a profile's keys.
  const sessionToken = input.sessionToken ?? (fromEnv ? env.AWS_SESSION_TOKEN : profile.credentials.get('aws_session_token') ?? profile.config.get('aws_session_token'));
  return sessionToken === undefined ? { accessKeyId, secretAccessKey } : { accessKeyId, secretAccessKey, sessionToken };
}

function endpointFrom(input: S3Input, env: NodeJS.ProcessEnv, profile: Profile, region: string): string {
  const endpoint = input.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? profile.config.get('endpoint_url') ?? `https://s3.${region}.amazonaws.com`;
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new InvalidInputError(`S3 endpoint '${endpoint}' is not a URL: write http(s)://HOST[:PORT]`, { endpoint });
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username !== '' || url.search !== '') {
    throw new InvalidInputError(`S3 endpoint '${endpoint}' must be http(s)://HOST[:PORT][/PATH], without user or query`, { endpoint: url.host });
  }
  return url.href.replace(/\/+$/, '');
}

/** The bundle's text, read once here: worker threads get it with the options instead of reading the file again. */
function readCaBundle(path: string | undefined): string | null {
  if (path === undefined || path === '') return null;
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidInputError(`AWS_CA_BUNDLE ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)}); point it at a PEM file of the CA certificates`, { path }, err);
  }
}

/** Everything the backend needs, each field from the first of: `input`, the environment, the AWS files, a default. */
export function resolveS3Options(input: S3Input, env: NodeJS.ProcessEnv = process.env): S3Options {
  const { bucket, prefix } = parseS3Location(input.location);
  const profileName = input.profile ?? env.AWS_PROFILE ?? 'default';
  const profile = readProfile(profileName, env);
  const region = input.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? profile.config.get('region') ?? 'us-east-1';
  const endpoint = endpointFrom(input, env, profile, region);
  const addressing = profile.config.get('addressing_style');
  // Virtual-hosted names need DNS per bucket: AWS has it, a radosgw or MinIO on an address usually not.
  const pathStyle = input.pathStyle ?? (addressing === 'path' ? true : addressing === 'virtual' ? false : !new URL(endpoint).hostname.endsWith('.amazonaws.com'));
  return {
    bucket,
    prefix,
    endpoint,
    region,
    pathStyle,
    credentials: credentialsFrom(input, env, profile, profileName),
    // One directory per store: gc removes what a killed process of this host staged for it, and nothing of another store's.
    stageDir: input.stageDir ?? join(tmpdir(), `chunkvault-stage-${createHash('sha256').update(s3LocationText({ bucket, prefix })).digest('hex').slice(0, 16)}`),
    partSize: input.partSize ?? 8 * 1024 * 1024,
    maxAttempts: input.maxAttempts ?? 5,
    retryDelayMs: input.retryDelayMs ?? 100,
    timeoutMs: input.timeoutMs ?? 30_000,
    caBundle: input.caBundle !== undefined ? input.caBundle : readCaBundle(env.AWS_CA_BUNDLE ?? profile.config.get('ca_bundle')),
  };
}

/** `s3://bucket/prefix` as messages show it: never credentials. */
export function s3LocationText(options: S3Location): string {
  return `s3://${options.bucket}/${options.prefix}`.replace(/\/$/, '');
}
