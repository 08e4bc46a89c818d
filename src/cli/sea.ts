/**
 * The entry of the single-executable build (README: "A single executable"): bundled to one CommonJS
 * file, where neither top-level await nor a file next to the program is available. Its Node is the
 * one the executable was built with, so the version check of main.ts has nothing to check.
 */
import { main } from './process.ts';

void main();
