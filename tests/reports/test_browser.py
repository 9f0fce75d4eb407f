"""The report in a real browser: headless Chromium loads every image of report.html.

A small script in a copy of the page writes each image's naturalWidth into the DOM after
the page has loaded; ``--dump-dom`` prints the DOM, so the test reads what the browser
decoded. A screenshot is taken too (left in the test's tmp directory to look at).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from lowbit.reports import build_report

_PROBE = """
<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "lowbit-probe";
  out.textContent = Array.from(document.images)
    .map((img) => img.alt + "=" + img.naturalWidth + "x" + img.naturalHeight).join("\\n");
  document.body.appendChild(out);
});
</script>
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium)")


def _flags(profile_dir) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile_dir}",
    ]


@pytest.mark.slow
def test_chromium_loads_every_image(tiny_run, tmp_path):
    browser = _chromium()
    report = build_report(tiny_run)
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", _PROBE + "</body>"))
    dom = subprocess.run(
        [
            browser,
            *_flags(tmp_path / "profile"),
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    ).stdout
    sizes = re.findall(r"=(\d+)x(\d+)", dom.split('id="lowbit-probe"', 1)[-1])
    assert sizes, "the probe did not run: " + dom[-500:]
    assert len(sizes) == report.read_text().count("<img ")
    assert all(int(w) > 300 and int(h) > 200 for w, h in sizes), sizes
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            *_flags(tmp_path / "profile"),
            "--hide-scrollbars",
            "--window-size=1280,4000",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=90,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
