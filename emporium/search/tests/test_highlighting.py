from emporium.search.highlighting import MARK_END, MARK_START, highlight_markup


def test_escapes_product_text_and_keeps_only_mark_tags() -> None:
    text = f'<script>alert("x")</script> {MARK_START}phone{MARK_END} & <b>case</b>'
    assert highlight_markup(text) == (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; <mark>phone</mark> "
        "&amp; &lt;b&gt;case&lt;/b&gt;"
    )


def test_stray_markers_still_give_balanced_tags() -> None:
    assert highlight_markup(f"a{MARK_END}b{MARK_START}c{MARK_START}d") == "ab<mark>cd</mark>"


def test_plain_text_is_only_escaped() -> None:
    assert highlight_markup("Tom & Jerry's") == "Tom &amp; Jerry&#x27;s"
