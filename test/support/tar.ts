/** Reads a tar archive (uncompressed) into name → header and bytes, with tar-stream's extractor. */
import tar from 'tar-stream';
import type { Header } from 'tar-stream';

export async function untar(body: Buffer): Promise<Map<string, { header: Header; data: Buffer }>> {
  const out = new Map<string, { header: Header; data: Buffer }>();
  const ex = tar.extract();
  ex.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      out.set(header.name, { header, data: Buffer.concat(chunks) });
      next();
    });
  });
  const done = new Promise<void>((resolve, reject) => {
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  ex.end(body);
  await done;
  return out;
}
