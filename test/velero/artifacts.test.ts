import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { artifactNames, findArtifact, findArtifactByKind, isDns1123Label, isDns1123Subdomain } from '../../src/velero/artifacts.ts';

describe('object keys match Velero', () => {
  const backups: [string, string, string][] = [
    ['log', 'BackupLog', 'backups/b/b-logs.gz'],
    ['contents', 'BackupContents', 'backups/b/b.tar.gz'],
    ['volumesnapshots', 'BackupVolumeSnapshots', 'backups/b/b-volumesnapshots.json.gz'],
    ['itemoperations', 'BackupItemOperations', 'backups/b/b-itemoperations.json.gz'],
    ['resourcelist', 'BackupResourceList', 'backups/b/b-resource-list.json.gz'],
    ['results', 'BackupResults', 'backups/b/b-results.gz'],
    ['csivolumesnapshots', 'CSIBackupVolumeSnapshots', 'backups/b/b-csi-volumesnapshots.json.gz'],
    ['csivolumesnapshotcontents', 'CSIBackupVolumeSnapshotContents', 'backups/b/b-csi-volumesnapshotcontents.json.gz'],
    ['volumeinfos', 'BackupVolumeInfos', 'backups/b/b-volumeinfo.json.gz'],
  ];
  const restores: [string, string, string][] = [
    ['log', 'RestoreLog', 'restores/r/restore-r-logs.gz'],
    ['results', 'RestoreResults', 'restores/r/restore-r-results.gz'],
    ['resourcelist', 'RestoreResourceList', 'restores/r/restore-r-resource-list.json.gz'],
    ['itemoperations', 'RestoreItemOperations', 'restores/r/restore-r-itemoperations.json.gz'],
    ['volumeinfo', 'RestoreVolumeInfo', 'restores/r/r-volumeinfo.json.gz'],
  ];
  for (const [artifact, kind, key] of backups) {
    test(`backups/${artifact}`, () => {
      assert.equal(findArtifact('backups', artifact)?.key('b'), key);
      assert.deepEqual(findArtifactByKind(kind)?.owner, 'backups');
      assert.equal(findArtifactByKind(kind)?.def.artifact, artifact);
    });
  }
  for (const [artifact, kind, key] of restores) {
    test(`restores/${artifact}`, () => {
      assert.equal(findArtifact('restores', artifact)?.key('r'), key);
      assert.equal(findArtifactByKind(kind)?.owner, 'restores');
    });
  }
  test('the lists are complete and nothing else resolves', () => {
    assert.deepEqual(artifactNames('backups').sort(), backups.map((b) => b[0]).sort());
    assert.deepEqual(artifactNames('restores').sort(), restores.map((r) => r[0]).sort());
    assert.equal(findArtifact('restores', 'contents'), undefined);
    assert.equal(findArtifact('backups', 'volumeinfo'), undefined);
    assert.equal(findArtifactByKind('Nope'), undefined);
  });
});

describe('DNS-1123 names', () => {
  for (const ok of ['a', 'nightly-2026-01-01', 'a.b.c', '0abc', 'x'.repeat(253)]) {
    test(`accepts ${ok.slice(0, 20)}`, () => assert.equal(isDns1123Subdomain(ok), true));
  }
  for (const bad of ['', 'A', '-a', 'a-', '..', 'a/b', 'a..b', '.a', 'a_b', 'a\u0000', 'x'.repeat(254), '%2e%2e']) {
    test(`refuses ${JSON.stringify(bad.slice(0, 20))}`, () => assert.equal(isDns1123Subdomain(bad), false));
  }
  test('namespaces are labels', () => {
    assert.equal(isDns1123Label('velero'), true);
    assert.equal(isDns1123Label('a.b'), false);
    assert.equal(isDns1123Label('x'.repeat(64)), false);
  });
});
