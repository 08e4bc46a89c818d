import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAwsCredentials } from '../../src/stores/credentials/aws.ts';
import { InvalidLocationError } from '../../src/stores/errors.ts';

const AK = 'AKIAIOSFODNN7EXAMPLE';
const SK = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const TOKEN = 'IQoJb3JpZ2luX2VjEHoaCXVzLWVhc3QtMSJHMEUCIQD+/example==';

const file = (text: string): Uint8Array => Buffer.from(text);

describe('parseAwsCredentials: good files', () => {
  const cases: { name: string; text: string; profile?: string; want: object }[] = [
    {
      name: 'the default profile',
      text: `[default]\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\n`,
      want: { accessKeyId: AK, secretAccessKey: SK },
    },
    {
      name: 'no spaces around "=" and no final newline',
      text: `[default]\naws_access_key_id=${AK}\naws_secret_access_key=${SK}`,
      want: { accessKeyId: AK, secretAccessKey: SK },
    },
    {
      name: 'a session token',
      text: `[default]\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\naws_session_token = ${TOKEN}\n`,
      want: { accessKeyId: AK, secretAccessKey: SK, sessionToken: TOKEN },
    },
    {
      name: 'a named profile written [name]',
      text: `[default]\naws_access_key_id = a\naws_secret_access_key = b\n\n[tenant]\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\n`,
      profile: 'tenant',
      want: { accessKeyId: AK, secretAccessKey: SK },
    },
    {
      name: 'a named profile written [profile name]',
      text: `[profile tenant]\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\n`,
      profile: 'tenant',
      want: { accessKeyId: AK, secretAccessKey: SK },
    },
    {
      name: '[name] wins over [profile name]',
      text: `[profile tenant]\naws_access_key_id = other\naws_secret_access_key = other\n[tenant]\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\n`,
      profile: 'tenant',
      want: { accessKeyId: AK, secretAccessKey: SK },
    },
    {
      name: 'a dotted profile name stays whole',
      text: `[team.a]\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\n`,
      profile: 'team.a',
      want: { accessKeyId: AK, secretAccessKey: SK },
    },
    {
      name: 'an empty profile name means default',
      text: `[default]\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\n`,
      profile: '  ',
      want: { accessKeyId: AK, secretAccessKey: SK },
    },
    {
      name: 'comments: whole lines, and after whitespace; "#" and ";" inside a value are kept',
      text: `# leading comment\n; another\n[default] # trailing\naws_access_key_id = ${AK} ; note\naws_secret_access_key = a#b;c=d\n`,
      want: { accessKeyId: AK, secretAccessKey: 'a#b;c=d' },
    },
    {
      name: 'quotes are part of the value, as in the AWS SDKs',
      text: `[default]\naws_access_key_id = "${AK}"\naws_secret_access_key = '${SK}'\n`,
      want: { accessKeyId: `"${AK}"`, secretAccessKey: `'${SK}'` },
    },
    {
      name: 'CRLF line ends, a byte-order mark, indentation and upper-case key names',
      text: `\uFEFF[default]\r\n  AWS_ACCESS_KEY_ID = ${AK}\r\n\tAws_Secret_Access_Key = ${SK}\r\n`,
      want: { accessKeyId: AK, secretAccessKey: SK },
    },
    {
      name: 'other keys (region, output) are ignored',
      text: `[default]\nregion = eu-west-1\noutput = json\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\n`,
      want: { accessKeyId: AK, secretAccessKey: SK },
    },
    {
      name: 'a section written twice is merged',
      text: `[default]\naws_access_key_id = ${AK}\n[other]\nx = 1\n[default]\naws_secret_access_key = ${SK}\n`,
      want: { accessKeyId: AK, secretAccessKey: SK },
    },
    {
      name: 'the words true and null are plain text',
      text: `[default]\naws_access_key_id = true\naws_secret_access_key = null\n`,
      want: { accessKeyId: 'true', secretAccessKey: 'null' },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(parseAwsCredentials(file(c.text), 'velero/default', c.profile), c.want);
      // A string is accepted as well as bytes.
      assert.deepEqual(parseAwsCredentials(c.text, 'velero/default', c.profile), c.want);
    });
  }
});

describe('parseAwsCredentials: malformed files', () => {
  const cases: { name: string; text: string | Uint8Array; profile?: string; want: RegExp }[] = [
    { name: 'a bare line (a pasted secret)', text: `[default]\naws_access_key_id = ${AK}\n${SK}\n`, want: /credential file line 3: expected "\[profile\]" or "key = value"/ },
    { name: 'a key before any section', text: `aws_access_key_id = ${AK}\n[default]\n`, want: /line 1: a key outside any \[profile\] section/ },
    { name: 'an empty section name', text: `[]\naws_access_key_id = ${AK}\n`, want: /line 1: malformed \[section\] name/ },
    { name: 'a bracket inside a section name', text: `[a[b]\naws_access_key_id = ${AK}\n`, want: /line 1: malformed \[section\] name/ },
    { name: 'a value without a key', text: `[default]\n = ${SK}\n`, want: /line 2: malformed key name/ },
    { name: 'a key with spaces', text: `[default]\naws secret = ${SK}\n`, want: /line 2: malformed key name/ },
    {
      name: 'a key set twice in one section',
      text: `[default]\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\nAWS_ACCESS_KEY_ID = ${TOKEN}\n`,
      want: /line 4: the key AWS_ACCESS_KEY_ID is set twice in its section/,
    },
    { name: 'no such profile', text: `[default]\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\n`, profile: 'tenant', want: /has no profile "tenant"/ },
    { name: 'no access key id', text: `[default]\naws_secret_access_key = ${SK}\n`, want: /profile "default" of the AWS credential file has no aws_access_key_id/ },
    { name: 'no secret', text: `[default]\naws_access_key_id = ${AK}\n`, want: /has no aws_secret_access_key/ },
    { name: 'an empty secret', text: `[default]\naws_access_key_id = ${AK}\naws_secret_access_key =\n`, want: /has an empty aws_secret_access_key/ },
    { name: 'a secret that is only a comment', text: `[default]\naws_access_key_id = ${AK}\naws_secret_access_key = # ${SK}\n`, want: /has an empty aws_secret_access_key/ },
    { name: 'an empty session token', text: `[default]\naws_access_key_id = ${AK}\naws_secret_access_key = ${SK}\naws_session_token =\n`, want: /has an empty aws_session_token/ },
    { name: 'an empty file', text: '', want: /has no profile "default"/ },
    { name: 'not UTF-8', text: Buffer.concat([Buffer.from(`[default]\naws_access_key_id = ${AK}\n`), Buffer.from([0xff, 0xfe, 0x00])]), want: /is not valid UTF-8/ },
  ];
  for (const c of cases) {
    test(`${c.name} → InvalidLocationError naming the location, without any value`, () => {
      assert.throws(
        () => parseAwsCredentials(typeof c.text === 'string' ? file(c.text) : c.text, 'team-a/primary', c.profile),
        (err: unknown) => {
          assert.ok(err instanceof InvalidLocationError, String(err));
          assert.match(err.message, /^location team-a\/primary: /);
          assert.match(err.message, c.want);
          for (const secret of [AK, SK, TOKEN]) assert.ok(!err.message.includes(secret), `message shows a value: ${err.message}`);
          return true;
        },
      );
    });
  }
});
