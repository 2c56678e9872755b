"""Check the built book in a real browser: every page loads offline, whole and without errors.

Every ``*.html`` page of the built book is opened from disk (``file://`` URLs) in headless
Chromium through playwright's sync API, one browser for all pages. For each page it records

* images that did not load (``<img>`` with ``complete`` false or ``naturalWidth == 0`` once
  the page has loaded and the network is idle; lazy images are made eager first),
* JavaScript errors (``pageerror`` events and console messages of type ``error``),
* failed requests (``requestfailed``),
* requests that leave the disk: any URL that does not start with ``file://``, ``data:``,
  ``blob:`` or ``about:``. Such requests are aborted in the browser (and so also fail), so
  the check never touches the network and gives the same answer online and offline.

It saves a full-page PNG screenshot of every page to
``OUT_DIR/<relative path with / replaced by __>.png``, prints one line per page and exits
1 when any page has a problem (2 when the check cannot run at all)::

    python scripts/check_browser.py _build/html --screenshots _build/screenshots

Chromium is Debian's (``apt-get install chromium``; ``/usr/bin/chromium``), never a
browser downloaded by ``playwright install``.
"""

import argparse
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Folders of the Sphinx build that hold assets and copies, not pages: _static (theme
# files; a few *.html templates there are fragments, not pages), _sources (the sources of
# the pages), _images (figures). genindex.html and search.html are checked like every
# other page: both are static HTML (search.html loads searchindex.js with a <script> tag,
# which works from file://), so they are not skipped.
SKIP_DIRS = {"_static", "_sources", "_images"}

# URL schemes a page may request: everything else leaves the disk.
LOCAL_SCHEMES = ("file://", "data:", "blob:", "about:")

# Everything that is not one of LOCAL_SCHEMES (matched by playwright against full URLs).
_REMOTE_URL = re.compile(r"^(?!file://|data:|blob:|about:)[a-zA-Z][a-zA-Z0-9+.-]*:")

# Wait for idle network after the load event (ms), and for images still decoding (ms).
NETWORK_IDLE_MS = 3000
IMAGE_WAIT_MS = 2000
PAGE_TIMEOUT_MS = 30000
VIEWPORT = {"width": 1280, "height": 900}

# Makes lazy images eager, waits (at most `timeout` ms) for those not complete yet, and
# returns every <img> with its state.
_IMAGES_JS = """async (timeout) => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { if (img.loading === "lazy") img.loading = "eager"; }
  const pending = imgs.filter((img) => !img.complete).map((img) => new Promise((done) => {
    img.addEventListener("load", done, {once: true});
    img.addEventListener("error", done, {once: true});
  }));
  await Promise.race([Promise.all(pending), new Promise((done) => setTimeout(done, timeout))]);
  return imgs.map((img) => ({src: img.getAttribute("src") || "", url: img.currentSrc || img.src,
                            complete: img.complete, width: img.naturalWidth}));
}"""


class CheckError(RuntimeError):
    """The check cannot run: no pages, no Chromium, no playwright."""


@dataclass
class PageResult:
    """What the browser saw on one page.

    Attributes
    ----------
    page : str
        Path of the page relative to the HTML folder (``/`` separated).
    images_total, images_ok : int
        Number of ``<img>`` elements on the page, and of those that loaded.
    broken_images : list of str
        ``src`` of each image that did not load.
    js_errors : list of str
        Uncaught exceptions (``pageerror``, as ``uncaught JavaScript error: ...``) and console
        messages of type ``error`` (as ``console error: ...``).
    failed_requests : list of str
        ``URL (reason)`` of each request that failed.
    external_requests : list of str
        URLs requested that are not ``file://``, ``data:``, ``blob:`` or ``about:``.
    load_error : str or None
        Why the page itself could not be opened, if it could not.
    screenshot : pathlib.Path or None
        The full-page PNG saved, if screenshots were asked for.
    seconds : float
        Time spent on the page, screenshot included.
    """

    page: str
    images_total: int = 0
    images_ok: int = 0
    broken_images: list = field(default_factory=list)
    js_errors: list = field(default_factory=list)
    failed_requests: list = field(default_factory=list)
    external_requests: list = field(default_factory=list)
    load_error: str = None
    screenshot: Path = None
    seconds: float = 0.0

    @property
    def problems(self):
        """Each problem of the page as one readable string (empty when the page is fine).

        Returns
        -------
        list of str
        """
        out = [f"page did not load: {self.load_error}"] if self.load_error else []
        out += [f"image did not load: {src}" for src in self.broken_images]
        out += [f"request left file://: {url}" for url in self.external_requests]
        out += [f"request failed: {req}" for req in self.failed_requests]
        out += list(self.js_errors)
        return out

    @property
    def ok(self):
        """True when the page has no problem."""
        return not self.problems


def find_pages(html_dir):
    """List the pages of a built book.

    Parameters
    ----------
    html_dir : str or pathlib.Path
        The HTML folder of the build (``_build/html``).

    Returns
    -------
    list of pathlib.Path
        Every ``*.html`` file under `html_dir` outside :data:`SKIP_DIRS`, sorted.

    Raises
    ------
    CheckError
        When `html_dir` is not a folder or holds no page.
    """
    html_dir = Path(html_dir)
    if not html_dir.is_dir():
        raise CheckError(f"HTML folder {html_dir} does not exist: build the book first (make book)")
    pages = sorted(p for p in html_dir.rglob("*.html")
                   if not SKIP_DIRS.intersection(p.relative_to(html_dir).parts[:-1]))
    if not pages:
        raise CheckError(f"no *.html page in {html_dir} (outside {', '.join(sorted(SKIP_DIRS))})")
    return pages


def find_chromium(chromium=None):
    """Path of the Chromium executable to drive.

    Parameters
    ----------
    chromium : str or pathlib.Path, optional
        An explicit executable; by default ``/usr/bin/chromium``, else ``chromium`` on PATH.

    Returns
    -------
    str

    Raises
    ------
    CheckError
        When no executable Chromium is found.
    """
    if chromium is not None:
        path = shutil.which(str(chromium))
        if path is None:
            raise CheckError(f"Chromium {chromium} not found or not executable "
                             "(install Debian's with: apt-get install chromium)")
        return path
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    path = shutil.which("chromium")
    if path is None:
        raise CheckError("Chromium not found (no /usr/bin/chromium, no chromium on PATH): "
                         "install it with: apt-get install chromium")
    return path


def screenshot_name(relative):
    """File name of a page's screenshot: its relative path with ``/`` replaced by ``__``.

    Parameters
    ----------
    relative : str
        ``/``-separated path of the page relative to the HTML folder.

    Returns
    -------
    str
        E.g. ``book__01_data.html.png`` for ``book/01_data.html``.
    """
    return relative.replace("/", "__") + ".png"


def _attach_listeners(page, result):
    """Record the page's JavaScript errors and failed and non-local requests into `result`."""
    def on_console(msg):
        if msg.type == "error":
            where = msg.location.get("url", "") if msg.location else ""
            result.js_errors.append(f"console error: {msg.text}" + (f" ({where})" if where else ""))

    def on_request(request):
        if not request.url.startswith(LOCAL_SCHEMES):
            result.external_requests.append(request.url)

    def on_failed(request):
        result.failed_requests.append(f"{request.url} ({request.failure})")

    page.on("pageerror", lambda exc: result.js_errors.append(f"uncaught JavaScript error: {exc.message}"))
    page.on("console", on_console)
    page.on("request", on_request)
    page.on("requestfailed", on_failed)


def check_page(context, path, html_dir, screenshots=None):
    """Open one page in a new tab of `context` and record what went wrong.

    Parameters
    ----------
    context : playwright.sync_api.BrowserContext
        The browser context shared by all pages.
    path : pathlib.Path
        The page's file.
    html_dir : pathlib.Path
        The HTML folder (for the page's relative name).
    screenshots : pathlib.Path, optional
        Folder for the full-page screenshot (none is taken when omitted).

    Returns
    -------
    PageResult
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    start = time.perf_counter()
    result = PageResult(page=path.relative_to(html_dir).as_posix())
    page = context.new_page()
    _attach_listeners(page, result)
    try:
        page.goto(path.resolve().as_uri(), wait_until="load", timeout=PAGE_TIMEOUT_MS)
        try:
            page.wait_for_load_state("networkidle", timeout=NETWORK_IDLE_MS)
        except PlaywrightTimeout:
            pass  # still busy after the wait: the images below tell whether it matters
        images = page.evaluate(_IMAGES_JS, IMAGE_WAIT_MS)
        result.images_total = len(images)
        broken = [img for img in images if not img["complete"] or img["width"] == 0]
        result.images_ok = result.images_total - len(broken)
        result.broken_images = [img["src"] or img["url"] or "(no src)" for img in broken]
        if screenshots is not None:
            result.screenshot = Path(screenshots) / screenshot_name(result.page)
            page.screenshot(path=str(result.screenshot), full_page=True, timeout=PAGE_TIMEOUT_MS)
    except PlaywrightError as exc:
        result.load_error = str(exc).splitlines()[0]
    finally:
        page.close()
    result.seconds = time.perf_counter() - start
    return result


def _import_playwright():
    """Import playwright's sync API, or raise :class:`CheckError` saying how to install it."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise CheckError(f"playwright is not importable ({exc}): pip install playwright "
                         "(Chromium itself comes from apt-get install chromium)") from exc
    return sync_playwright


def check_pages(html_dir, screenshots=None, chromium=None):
    """Open every page of a built book in headless Chromium and record its problems.

    Parameters
    ----------
    html_dir : str or pathlib.Path
        The HTML folder of the build (``_build/html``).
    screenshots : str or pathlib.Path, optional
        Folder for one full-page PNG per page (created if needed); none when omitted.
    chromium : str or pathlib.Path, optional
        Chromium executable (default: ``/usr/bin/chromium``, else ``chromium`` on PATH).

    Returns
    -------
    list of PageResult
        One per page, in the order of :func:`find_pages`.

    Raises
    ------
    CheckError
        When there is no page, no Chromium or no playwright.
    """
    html_dir = Path(html_dir)
    pages = find_pages(html_dir)
    executable = find_chromium(chromium)
    sync_playwright = _import_playwright()
    if screenshots is not None:
        screenshots = Path(screenshots)
        screenshots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        # --no-sandbox: Chromium's sandbox refuses to run as root (as in CI and containers).
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport=VIEWPORT)
            # Abort anything that would leave the disk: the `request` event has recorded it.
            context.route(_REMOTE_URL, lambda route: route.abort())
            return [check_page(context, page, html_dir, screenshots) for page in pages]
        finally:
            browser.close()


def summary_line(result):
    """One line for a page: name, images loaded / total, time and problems.

    Parameters
    ----------
    result : PageResult

    Returns
    -------
    str
    """
    status = "ok" if result.ok else f"{len(result.problems)} problem(s)"
    line = f"{result.page}: images {result.images_ok}/{result.images_total}, {result.seconds:.1f} s, {status}"
    return line + "".join(f"\n    - {p}" for p in result.problems)


def main(argv=None):
    """Command line: check the pages, print one line per page, return the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 when every page is fine, 1 when a page has a problem, 2 when the check cannot run.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", type=Path, help="the book's HTML folder (_build/html)")
    parser.add_argument("--screenshots", type=Path, metavar="OUT_DIR", help="folder for one full-page PNG per page")
    parser.add_argument("--chromium", metavar="PATH", help="Chromium executable (default /usr/bin/chromium)")
    parser.add_argument("--if-available", action="store_true",
                        help="without Chromium or playwright, say so and exit 0 (what `make book` does)")
    args = parser.parse_args(argv)
    if args.if_available:
        try:
            find_chromium(args.chromium)
            _import_playwright()
        except CheckError as exc:
            print(f"check_browser: the book was not checked in a browser: {exc}")
            return 0
    start = time.perf_counter()
    try:
        results = check_pages(args.html_dir, screenshots=args.screenshots, chromium=args.chromium)
    except CheckError as exc:
        print(f"check_browser: error: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(summary_line(result))
    bad = [r for r in results if not r.ok]
    print(f"{len(results)} page(s) in {time.perf_counter() - start:.1f} s; "
          + (f"{len(bad)} with problems: {', '.join(r.page for r in bad)}" if bad else "no problem"))
    if args.screenshots is not None:
        print(f"screenshots in {args.screenshots}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
