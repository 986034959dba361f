/**
 * Headless Chromium for the browser tests, shipped by the npm package @sparticuz/chromium (no system
 * browser) and driven through playwright-core.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium, type Browser } from 'playwright-core';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PACKAGE = path.join(ROOT, 'node_modules', '@sparticuz', 'chromium');

/**
 * The package's brotli-packed binary, unpacked once per package version under node_modules/.cache (so
 * `npm ci` starts afresh). The package unpacks into the OS temp dir, non-atomically and into a fixed
 * /tmp/chromium shared with every other checkout; here a child process unpacks into a staging dir of
 * its own (its TMPDIR) that is then renamed into place, so test files starting at once never run a
 * half-written binary. Its fonts.conf names /tmp/fonts, so one naming the unpacked fonts replaces it.
 */
async function unpackedChromium(): Promise<{ executable: string; fontconfig: string }> {
  const { version } = JSON.parse(await readFile(path.join(PACKAGE, 'package.json'), 'utf8')) as { version: string };
  const dir = path.join(ROOT, 'node_modules', '.cache', `sparticuz-chromium-${version}`);
  const found = { executable: path.join(dir, 'chromium'), fontconfig: path.join(dir, 'fonts.conf') };
  if (existsSync(found.fontconfig)) return found;
  await mkdir(path.dirname(dir), { recursive: true });
  const staging = await mkdtemp(`${dir}.unpacking-`);
  try {
    await promisify(execFile)(
      process.execPath,
      ['--input-type=module', '-e', "await (await import('@sparticuz/chromium')).default.executablePath()"],
      { cwd: ROOT, env: { ...process.env, TMPDIR: staging } },
    );
    await writeFile(
      path.join(staging, 'fonts.conf'),
      `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n` +
        `  <dir>${path.join(dir, 'fonts', 'fonts')}</dir>\n  <cachedir>${path.join(dir, 'fonts-cache')}</cachedir>\n</fontconfig>\n`,
    );
    await rename(staging, dir);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    // Another test file unpacked the same version first.
    if (!existsSync(found.fontconfig)) throw err;
  }
  return found;
}

/**
 * Launches the packaged Chromium headless. None of the package's own serverless flags are passed: its
 * `--single-process` ends the whole browser when a page closes. Playwright's defaults (headless, no
 * sandbox) are what it needs here.
 */
export async function launchChromium(): Promise<Browser> {
  const { executable, fontconfig } = await unpackedChromium();
  return chromium.launch({
    executablePath: executable,
    env: { ...process.env, FONTCONFIG_FILE: fontconfig },
  });
}
