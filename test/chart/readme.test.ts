/**
 * The chart's README lists every value, generated from values.yaml (scripts/chart-readme.ts): the
 * README in the repository is what the generator prints now, no value a reader needs lacks a comment,
 * and the generator attaches comments, defaults and sections as values.yaml means them.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chartReadme, currentReadme, undocumented, valueDocs } from '../../scripts/chart-readme.ts';
import { CHART_DIR, readChartFile } from './chart.ts';

const SCRIPT = fileURLToPath(new URL('../../scripts/chart-readme.ts', import.meta.url));

const SAMPLE = `##
## Top banner, then a blank line: it titles nothing.
##

# The image.
image:
  # Repository.
  repository: vds
  # Tag | pipe and <release>, \`<kept>\` in code.
  tag: ""

# A list.
watch: []
# - an example, then a blank line

##
## Exposure: how users reach it.
##
service:
  # Type.
  type: ClusterIP
  nested:
    deeper: 1
undocumented: true
`;

const CHART = 'name: c\ndescription: d\nversion: 1.0.0\nappVersion: "2.0.0"\n';

describe('chart README', () => {
  test('the README is what scripts/chart-readme.ts prints from values.yaml and Chart.yaml now', async () => {
    assert.equal(await readFile(join(CHART_DIR, 'README.md'), 'utf8'), currentReadme(), 'run node scripts/chart-readme.ts');
  });

  test('every value a reader needs has a comment in values.yaml, and every top-level value is in the README', async () => {
    const docs = valueDocs(await readChartFile('values.yaml'));
    assert.deepEqual(undocumented(docs), []);
    const readme = await readFile(join(CHART_DIR, 'README.md'), 'utf8');
    const values = (await import('yaml')).parse(await readChartFile('values.yaml')) as Record<string, unknown>;
    for (const key of Object.keys(values)) assert.ok(readme.includes(`| \`${key}\` |`), key);
    for (const key of ['image.repository', 'podAntiAffinity', 'tests.enabled', 'credentials.existingSecret']) assert.ok(readme.includes(`| \`${key}\` |`), key);
  });

  test('comments, defaults, groups and sections as values.yaml lays them out', () => {
    const docs = valueDocs(SAMPLE);
    const by = new Map(docs.map((d) => [d.path, d]));
    assert.deepEqual([...by.keys()], ['image', 'image.repository', 'image.tag', 'watch', 'service', 'service.type', 'service.nested', 'service.nested.deeper', 'undocumented']);
    assert.equal(by.get('image')!.description, 'The image.');
    assert.equal(by.get('image')!.group, true);
    assert.equal(by.get('image')!.section, 'General', 'a banner followed by a blank line titles nothing');
    assert.equal(by.get('image.repository')!.value, 'vds');
    assert.equal(by.get('service')!.section, 'Exposure');
    assert.equal(by.get('service')!.description, 'Exposure: how users reach it.', 'the banner describes a key with no comment of its own');
    assert.equal(by.get('undocumented')!.description, '', 'an example after a value never describes the next key');
    assert.deepEqual(undocumented(docs), ['service.nested', 'undocumented'], 'a top-level key, and a key of a group, without a comment');

    const readme = chartReadme(SAMPLE, CHART);
    assert.match(readme, /^# c\n/);
    assert.match(readme, /Chart version 1\.0\.0, gateway version 2\.0\.0/);
    assert.match(readme, /\n### General\n\n\| Key \| Default \| Description \|\n/);
    assert.match(readme, /\n### Exposure\n/);
    assert.ok(readme.includes('| `image` |  | The image. |'), 'a group shows no default');
    assert.ok(readme.includes('| `image.repository` | `"vds"` | Repository. |'));
    assert.ok(readme.includes('| `watch` | `[]` | A list. |'));
    assert.ok(readme.includes('| `image.tag` | `""` | Tag \\| pipe and &lt;release&gt;, `<kept>` in code. |'), 'pipes escaped, tags outside code spans escaped');
  });

  test('--check exits 0 for the README as it is', async () => {
    const code = await new Promise<number>((resolve) => {
      execFile(process.execPath, [SCRIPT, '--check'], (err) => resolve(err ? Number((err as { code?: unknown }).code ?? 1) : 0));
    });
    assert.equal(code, 0);
  });
});
