/** supertest helpers. */
import type { Test } from 'supertest';

/** Makes supertest collect the body as one Buffer whatever its content type (gzip, octet-stream...). */
export function binary(req: Test): Test {
  return req.buffer(true).parse((res, cb) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => cb(null, Buffer.concat(chunks)));
  });
}
