import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { S3Backend } from '../../../store/backend/s3.js';
import { parseS3Location, resolveS3Options } from '../../../store/backend/s3-options.js';
import { tempDir } from '../../helpers/index.js';

const KEYS = { AWS_ACCESS_KEY_ID: 'AKENV', AWS_SECRET_ACCESS_KEY: 'secret-env' };

t.test('parseS3Location: bucket and prefix, bad ones named', async (t) => {
  t.same(parseS3Location('s3://backups/hv1/vms/'), { bucket: 'backups', prefix: 'hv1/vms/' });
  t.same(parseS3Location('s3://backups/hv1'), { bucket: 'backups', prefix: 'hv1/' });
  t.same(parseS3Location('s3://backups'), { bucket: 'backups', prefix: '' });
  t.same(parseS3Location('s3://backups/'), { bucket: 'backups', prefix: '' });
  for (const [location, message] of [
    ['https://backups/x', "--store 'https://backups/x' is not an s3:// location: write s3://BUCKET/PREFIX"],
    ['s3://', "--store 's3://': '' is not a bucket name (3-63 lower-case letters, digits, '.' or '-')"],
    ['s3://Backups/x', "--store 's3://Backups/x': 'Backups' is not a bucket name (3-63 lower-case letters, digits, '.' or '-')"],
    ['s3://backups/a//b', "--store 's3://backups/a//b': the prefix must not have empty, '.' or '..' parts"],
    ['s3://backups/a/../b', "--store 's3://backups/a/../b': the prefix must not have empty, '.' or '..' parts"],
  ]) {
    t.throws(() => parseS3Location(location!), { code: 'CV_INVALID_INPUT', message }, location);
  }
});

t.test('endpoint and region: options, then the variables, then the profile, then AWS', async (t) => {
  const home = await tempDir(t);
  await fs.mkdir(join(home, '.aws'));
  await fs.writeFile(join(home, '.aws', 'config'), '[default]\nregion = eu-central-1\nendpoint_url = http://config:7480\n[profile other]\nregion = ap-south-1\ns3 =\n  addressing_style = virtual\n');
  const env = { ...KEYS, HOME: home };
  const pick = (input: object, extra: Record<string, string> = {}) => {
    const { endpoint, region, pathStyle } = resolveS3Options({ location: 's3://b0b', ...input }, { ...env, ...extra });
    return { endpoint, region, pathStyle };
  };
  t.same(pick({}), { endpoint: 'http://config:7480', region: 'eu-central-1', pathStyle: true }, 'the default profile');
  t.same(pick({}, { AWS_ENDPOINT_URL: 'http://generic:1', AWS_DEFAULT_REGION: 'r2' }), { endpoint: 'http://generic:1', region: 'r2', pathStyle: true });
  t.same(pick({}, { AWS_ENDPOINT_URL: 'http://generic:1', AWS_ENDPOINT_URL_S3: 'http://s3only:2/', AWS_DEFAULT_REGION: 'r2', AWS_REGION: 'r1' }), { endpoint: 'http://s3only:2', region: 'r1', pathStyle: true });
  t.same(pick({ endpoint: 'https://rgw.example:8443', region: 'x', pathStyle: false }, { AWS_ENDPOINT_URL_S3: 'http://s3only:2' }), { endpoint: 'https://rgw.example:8443', region: 'x', pathStyle: false }, 'options win');
  t.same(pick({}, { AWS_PROFILE: 'other' }), { endpoint: 'https://s3.ap-south-1.amazonaws.com', region: 'ap-south-1', pathStyle: false }, 'AWS itself: virtual-hosted');
  t.throws(() => pick({ endpoint: 'rgw:7480' }), { code: 'CV_INVALID_INPUT', message: "S3 endpoint 'rgw:7480' must be http(s)://HOST[:PORT][/PATH], without user or query" });
});

t.test('credentials: options, then the variables, then the profile; none is a one-line error', async (t) => {
  const home = await tempDir(t);
  const file = join(home, 'creds');
  await fs.writeFile(file, '[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = secret-default\n[ops]\naws_access_key_id = AKOPS\naws_secret_access_key = secret-ops\naws_session_token = token-ops\n');
  const creds = (input: object, env: Record<string, string>) => resolveS3Options({ location: 's3://b0b', endpoint: 'http://rgw:1', ...input }, { HOME: home, ...env }).credentials;
  t.same(creds({}, { AWS_SHARED_CREDENTIALS_FILE: file }), { accessKeyId: 'AKDEFAULT', secretAccessKey: 'secret-default' });
  t.same(creds({}, { AWS_SHARED_CREDENTIALS_FILE: file, AWS_PROFILE: 'ops' }), { accessKeyId: 'AKOPS', secretAccessKey: 'secret-ops', sessionToken: 'token-ops' });
  t.same(creds({}, { AWS_SHARED_CREDENTIALS_FILE: file, ...KEYS, AWS_SESSION_TOKEN: 'token-env' }), { accessKeyId: 'AKENV', secretAccessKey: 'secret-env', sessionToken: 'token-env' });
  t.same(creds({ profile: 'ops' }, { AWS_SHARED_CREDENTIALS_FILE: file, AWS_SESSION_TOKEN: 'token-env' }), { accessKeyId: 'AKOPS', secretAccessKey: 'secret-ops', sessionToken: 'token-ops' }, 'a stray token does not join a profile\'s keys');
  t.same(creds({ accessKeyId: 'AKOPT', secretAccessKey: 'secret-opt' }, KEYS), { accessKeyId: 'AKOPT', secretAccessKey: 'secret-opt' });
  t.throws(() => creds({}, {}), {
    code: 'CV_INVALID_INPUT',
    message: "--store s3://b0b: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or aws_access_key_id and aws_secret_access_key in profile 'default' of ~/.aws/credentials",
  });
});

t.test('location has no credentials; the spec opens the same options', async (t) => {
  const options = resolveS3Options({ location: 's3://b0b/hv1', endpoint: 'http://rgw:1', partSize: 16 * 1024 * 1024 }, { ...KEYS, HOME: '/nonexistent' });
  const backend = new S3Backend(options);
  t.teardown(() => backend.close());
  t.equal(backend.location, 's3://b0b/hv1');
  t.equal(backend.localDir, null);
  const spec = structuredClone(backend.spec);
  t.equal(spec.kind, 's3');
  if (spec.kind === 's3') t.same(resolveS3Options(spec.options as { location: string }, {}), options, 'the spec needs no environment');
});
