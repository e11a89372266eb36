"""The HTML report: self-contained, and checked in a real headless Chromium where one exists."""
import json
import re

import pytest
import torchvision

import torchflops as tf
from torchflops._render import rows
import browser

METRICS = ("macs", "params", "backward_flops", "flops", "comparisons")


@pytest.fixture(scope="module")
def googlenet():
    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    return tf.count(model, input_size=(1, 3, 224, 224))


def test_the_page_is_one_file_that_fetches_nothing(googlenet, tmp_path):
    path = tmp_path / "report.html"
    googlenet.to_html(path)
    text = path.read_text()
    # no external script, style sheet, image or font: every src/href is absent
    assert not re.search(r"""\b(src|href)\s*=""", text)
    assert "http://" not in text and "https://" not in text and "@import" not in text
    data = json.loads(re.search(r'<script type="application/json" id="torchflops-data">(.*?)</script>',
                                text, re.S).group(1).replace("<\\/", "</"))
    assert data["summary"] == googlenet.to_dict()
    with pytest.raises(TypeError, match="path must be a file path"):
        googlenet.to_html(3)


@pytest.fixture(scope="module")
def page(googlenet, tmp_path_factory):
    if browser.executable() is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium); .ci/run installs it")
    path = tmp_path_factory.mktemp("html") / "googlenet.html"
    googlenet.to_html(path)
    with browser.Browser() as chrome:
        chrome.open(str(path))
        chrome.path = path
        yield chrome


def cells(chrome, key):
    return chrome.evaluate(f"""[...document.querySelectorAll('#table-body tr')].map(tr =>
        [tr.dataset.name, Number(tr.querySelector('td[data-key="{key}"]').dataset.value)])""")


@pytest.mark.slow
def test_the_page_renders_without_errors_or_requests(page):
    assert page.evaluate("document.body.dataset.ready") == "1"
    assert page.problems() == []
    assert page.requests() == [f"file://{page.path}"]


@pytest.mark.slow
def test_summary_and_table_equal_to_dict(page, googlenet):
    data = googlenet.to_dict()
    for key in METRICS:
        assert page.evaluate(f"document.getElementById('total-{key}').textContent") == f"{data['total'][key]:,}"
    assert page.evaluate("document.getElementById('total-trainable').textContent") == "6,624,904 / 0"
    page.evaluate("document.getElementById('depth').value = 'all'; "
                  "document.getElementById('depth').dispatchEvent(new Event('change'))")
    for key in METRICS:
        assert cells(page, key) == [[r["name"] or "(model)", r[key]] for r in data["records"]]


@pytest.mark.slow
def test_depth_folding_and_sorting(page, googlenet):
    page.evaluate("document.getElementById('depth').value = '1'; "
                  "document.getElementById('depth').dispatchEvent(new Event('change'))")
    folded = [[r.name, r.counts.macs] for r in rows(googlenet, 1)]
    assert cells(page, "macs") == folded
    page.evaluate("document.querySelector('th[data-key=\"macs\"]').click()")
    assert cells(page, "macs") == sorted(folded, key=lambda r: -r[1])   # ties keep table order
    page.evaluate("document.querySelector('th[data-key=\"macs\"]').click()")
    assert cells(page, "macs") == sorted(folded, key=lambda r: r[1])
    assert cells(page, "macs")[-1] == ["conv3", 346_816_512]


@pytest.mark.slow
def test_icicle_shows_each_metric_by_module_path(page, googlenet):
    for key in ("macs", "params", "backward_flops"):
        page.evaluate(f"document.getElementById('metric').value = '{key}'; "
                      "document.getElementById('metric').dispatchEvent(new Event('change'))")
        shown = dict(page.evaluate("[...document.querySelectorAll('#icicle div')].map(d => "
                                   "[d.dataset.name, Number(d.dataset.value)])"))
        assert shown[""] == getattr(googlenet.total, key)
        for name in ("inception3a", "inception3a.branch2", "inception3a.branch2.1.conv"):
            assert shown[name] == getattr(googlenet.module(name), key)
    # a click zooms into a module, a second click goes back up
    page.evaluate("document.querySelector('#icicle div[data-name=\"inception3a\"]').click()")
    assert page.evaluate("document.querySelector('#icicle div').dataset.name") == "inception3a"
    page.evaluate("document.querySelector('#icicle div[data-name=\"inception3a\"]').click()")
    assert page.evaluate("document.querySelector('#icicle div').dataset.name") == ""
    assert page.problems() == []
