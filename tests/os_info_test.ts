import assert from "node:assert/strict";
import { archName, hostName, osName, parseOsRelease } from "../lib/start/os_info.ts";

Deno.test("parseOsRelease() prefers PRETTY_NAME and strips quotes", () => {
  assert.equal(
    parseOsRelease('NAME="Ubuntu"\nVERSION_ID="22.04"\nPRETTY_NAME="Ubuntu 22.04.3 LTS"\n'),
    "Ubuntu 22.04.3 LTS",
  );
  assert.equal(parseOsRelease("NAME='Alpine Linux'\nID=alpine\n"), "Alpine Linux");
  assert.equal(parseOsRelease("NAME=Debian\n"), "Debian");
  assert.equal(parseOsRelease("# nothing here\n"), "");
});

Deno.test("osName() reads /etc/os-release alone and gives '' when it is missing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/os-release`, 'PRETTY_NAME="Test OS 1.0"\n');
    if (Deno.build.os === "linux") {
      assert.equal(await osName(`${dir}/os-release`), "Test OS 1.0");
      assert.equal(await osName(`${dir}/missing`), "");
      assert.notEqual(await osName(), "");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("archName() maps architectures as the original does", () => {
  assert.equal(archName("x86_64"), "x86_64");
  assert.equal(archName("aarch64"), "arm64");
  assert.equal(hostName(), Deno.hostname());
});
