/** An Authorizer for route tests: allows everything (or, with `deny`, nothing) and records what it was asked. */
import type { Authorizer, Decision, ResourceAttributes } from '../../src/auth/types.ts';

export class RecordingAuthorizer implements Authorizer {
  asked: ResourceAttributes[] = [];
  deny = false;
  authorize(_user: unknown, attrs: ResourceAttributes): Promise<Decision> {
    this.asked.push(attrs);
    return Promise.resolve(this.deny ? { allowed: false, reason: 'denied by the test' } : { allowed: true });
  }
}
