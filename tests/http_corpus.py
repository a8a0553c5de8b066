"""Byte corpus for the HTTP/1.1 parser tests (``tests/test_http11.py``).

``VALID`` holds well-formed request streams (one or several pipelined messages) with the events
they must produce; ``MALFORMED`` holds malformed and request-smuggling inputs with the exact
``HttpError.status`` the parser must raise. Both are also the seeds of the mutation fuzz loop.

Every entry is small on purpose: the tests feed each one split at every byte boundary.
"""

from __future__ import annotations

from typing import Any

H = b"Host: example.com\r\n"


def req(line: bytes, *fields: bytes, body: bytes = b"", host: bool = True) -> bytes:
    """Build one request: request line, Host (unless ``host=False``), fields, empty line, body."""
    head = line + b"\r\n" + (H if host else b"") + b"".join(f + b"\r\n" for f in fields)
    return head + b"\r\n" + body


def post(*fields: bytes, body: bytes = b"", line: bytes = b"POST /p HTTP/1.1") -> bytes:
    return req(line, *fields, body=body)


CHUNKED = b"Transfer-Encoding: chunked"

# --- valid corpus -------------------------------------------------------------------------------
# Each entry: name -> (bytes, expected). ``expected`` is a list of messages; each message is
# (request attributes to check, body bytes). Every message ends with EndOfMessage + PAUSED.

VALID: dict[str, tuple[bytes, list[tuple[dict[str, Any], bytes]]]] = {
    "get": (
        req(b"GET /index.html?x=1&y=%20 HTTP/1.1", b"Accept: */*"),
        [({"method": "GET", "path": "/index.html", "query": "x=1&y=%20", "version": "1.1",
           "keep_alive": True, "content_length": 0, "authority": "example.com",
           "headers": (("host", "example.com"), ("accept", "*/*"))}, b"")],
    ),
    "get_raw_path_not_decoded": (
        req(b"GET /a%2Fb/%E2%82%AC/c;p=1 HTTP/1.1"),
        [({"path": "/a%2Fb/%E2%82%AC/c;p=1", "query": ""}, b"")],
    ),
    "get_empty_query": (
        req(b"GET /x? HTTP/1.1"),
        [({"path": "/x", "query": "", "target": "/x?"}, b"")],
    ),
    "head": (
        req(b"HEAD /h HTTP/1.1"),
        [({"method": "HEAD", "path": "/h", "content_length": 0}, b"")],
    ),
    "options_asterisk": (
        req(b"OPTIONS * HTTP/1.1"),
        [({"method": "OPTIONS", "path": "*", "target": "*", "authority": "example.com"}, b"")],
    ),
    "options_path": (
        req(b"OPTIONS /api HTTP/1.1", b"Origin: http://x", b"Access-Control-Request-Method: POST"),
        [({"method": "OPTIONS", "path": "/api"}, b"")],
    ),
    "post_content_length": (
        post(b"Content-Type: application/json", b"Content-Length: 13", body=b'{"hello": 42}'),
        [({"method": "POST", "content_length": 13, "expect_continue": False}, b'{"hello": 42}')],
    ),
    "post_content_length_zero": (
        post(b"Content-Length: 0"),
        [({"content_length": 0}, b"")],
    ),
    "post_identical_content_lengths": (
        post(b"Content-Length: 3", b"Content-Length: 3, 3", body=b"abc"),
        [({"content_length": 3}, b"abc")],
    ),
    "post_content_length_leading_zeros": (
        post(b"Content-Length: 0003", body=b"abc"),
        [({"content_length": 3}, b"abc")],
    ),
    "post_binary_body_with_crlf": (
        post(b"Content-Length: 8", body=b"\r\n\r\n\x00\xff\r\n"),
        [({"content_length": 8}, b"\r\n\r\n\x00\xff\r\n")],
    ),
    "chunked": (
        post(CHUNKED, body=b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        [({"content_length": None}, b"hello world")],
    ),
    "chunked_uppercase_hex_and_coding": (
        post(b"Transfer-Encoding: CHUNKED", body=b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"),
        [({"content_length": None}, b"0123456789abcdefghij")],
    ),
    "chunked_extensions_and_trailers": (
        post(CHUNKED, b"Trailer: X-Checksum",
             body=b"3;name=value;quoted=\"a b\"\r\nabc\r\n2 ; ext\r\nde\r\n"
                  b"0;last\r\nX-Checksum: 1234\r\nX-Other:\tv\r\n\r\n"),
        [({"content_length": None}, b"abcde")],
    ),
    "chunked_leading_zero_sizes": (
        post(CHUNKED, body=b"0003\r\nabc\r\n000\r\n\r\n"),
        [({"content_length": None}, b"abc")],
    ),
    "chunked_16_hex_digits": (
        post(CHUNKED, body=b"0000000000000003\r\nabc\r\n0\r\n\r\n"),
        [({"content_length": None}, b"abc")],
    ),
    "chunked_empty_body": (
        post(CHUNKED, body=b"0\r\n\r\n"),
        [({"content_length": None}, b"")],
    ),
    "chunked_data_contains_crlf": (
        post(CHUNKED, body=b"4\r\n\r\n\r\n\r\n0\r\n\r\n"),
        [({"content_length": None}, b"\r\n\r\n")],
    ),
    "http10": (
        req(b"GET /old HTTP/1.0", host=False),
        [({"version": "1.0", "keep_alive": False, "authority": ""}, b"")],
    ),
    "http10_keep_alive": (
        req(b"GET /old HTTP/1.0", b"Connection: Keep-Alive", host=False),
        [({"version": "1.0", "keep_alive": True}, b"")],
    ),
    "http10_post": (
        req(b"POST /old HTTP/1.0", b"Content-Length: 2", body=b"hi", host=False),
        [({"version": "1.0", "content_length": 2}, b"hi")],
    ),
    "http10_expect_ignored": (
        req(b"POST /old HTTP/1.0", b"Expect: 100-continue", b"Content-Length: 2", body=b"hi",
            host=False),
        [({"version": "1.0", "expect_continue": False}, b"hi")],
    ),
    "http12_is_11": (
        req(b"GET / HTTP/1.2"),
        [({"version": "1.1", "keep_alive": True}, b"")],
    ),
    "connection_close": (
        req(b"GET / HTTP/1.1", b"Connection: close"),
        [({"keep_alive": False}, b"")],
    ),
    "absolute_form": (
        req(b"GET http://other.example:8080/a/b?q=1 HTTP/1.1"),
        [({"path": "/a/b", "query": "q=1", "authority": "other.example:8080",
           "target": "http://other.example:8080/a/b?q=1"}, b"")],
    ),
    "absolute_form_no_path": (
        req(b"GET HTTPS://other.example HTTP/1.1"),
        [({"path": "/", "query": "", "authority": "other.example"}, b"")],
    ),
    "absolute_form_query_only": (
        req(b"GET http://other.example?x=y HTTP/1.1"),
        [({"path": "/", "query": "x=y", "authority": "other.example"}, b"")],
    ),
    "connect_authority_form": (
        req(b"CONNECT proxy.example:443 HTTP/1.1"),
        [({"method": "CONNECT", "path": "", "authority": "proxy.example:443"}, b"")],
    ),
    "expect_100_continue": (
        post(b"Expect: 100-Continue", b"Content-Length: 4", body=b"data"),
        [({"expect_continue": True, "content_length": 4}, b"data")],
    ),
    "expect_100_continue_chunked": (
        post(b"Expect: 100-continue", CHUNKED, body=b"1\r\nx\r\n0\r\n\r\n"),
        [({"expect_continue": True, "content_length": None}, b"x")],
    ),
    "expect_100_continue_no_body": (
        req(b"GET / HTTP/1.1", b"Expect: 100-continue"),
        [({"expect_continue": False}, b"")],
    ),
    "upgrade": (
        req(b"GET /ws HTTP/1.1", b"Connection: keep-alive, Upgrade", b"Upgrade: websocket"),
        [({"upgrade": "websocket"}, b"")],
    ),
    "upgrade_without_connection_token": (
        req(b"GET /ws HTTP/1.1", b"Upgrade: websocket"),
        [({"upgrade": None}, b"")],
    ),
    "bare_lf_head": (
        b"GET /lf HTTP/1.1\nHost: example.com\nX-A: 1\n\n",
        [({"path": "/lf", "headers": (("host", "example.com"), ("x-a", "1"))}, b"")],
    ),
    "bare_lf_chunk_lines": (
        b"POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n3\nabc\r\n0\nT: v\n\n",
        [({"content_length": None}, b"abc")],
    ),
    "leading_empty_line": (
        b"\r\n" + req(b"GET /after-crlf HTTP/1.1"),
        [({"path": "/after-crlf"}, b"")],
    ),
    "header_whitespace_and_obs_text": (
        req(b"GET / HTTP/1.1", b"X-Pad: \t padded value \t ", b"X-Empty:", b"X-Latin: caf\xe9",
            b"X-Inner:  a  b  ", b"x-MiXeD: Case"),
        [({"headers": (("host", "example.com"), ("x-pad", "padded value"), ("x-empty", ""),
                       ("x-latin", "caf\xe9"), ("x-inner", "a  b"), ("x-mixed", "Case"))}, b"")],
    ),
    "weird_but_valid_tokens": (
        req(b"M-SEARCH /!$&'()*+,;=:@-._~ HTTP/1.1", b"X!#$%&'*+-.^_`|~9: ok"),
        [({"method": "M-SEARCH", "path": "/!$&'()*+,;=:@-._~"}, b"")],
    ),
    "get_with_body": (
        req(b"GET /g HTTP/1.1", b"Content-Length: 1", body=b"z"),
        [({"method": "GET", "content_length": 1}, b"z")],
    ),
    "pipelined_pair": (
        req(b"GET /1 HTTP/1.1") + req(b"GET /2 HTTP/1.1", b"Connection: close"),
        [({"path": "/1", "keep_alive": True}, b""), ({"path": "/2", "keep_alive": False}, b"")],
    ),
    "pipelined_triple": (
        post(b"Content-Length: 3", body=b"one") + req(b"HEAD /2 HTTP/1.1")
        + post(b"Content-Length: 5", body=b"three", line=b"PUT /3 HTTP/1.1"),
        [({"method": "POST"}, b"one"), ({"method": "HEAD"}, b""), ({"method": "PUT"}, b"three")],
    ),
    "pipelined_chunked_then_get": (
        post(CHUNKED, body=b"4;x=y\r\nGET \r\n0\r\nT: 1\r\n\r\n") + req(b"GET /next HTTP/1.1"),
        [({"content_length": None}, b"GET "), ({"method": "GET", "path": "/next"}, b"")],
    ),
    "pipelined_with_empty_line_between": (
        req(b"GET /1 HTTP/1.1") + b"\r\n" + req(b"GET /2 HTTP/1.1"),
        [({"path": "/1"}, b""), ({"path": "/2"}, b"")],
    ),
    "pipelined_http10_then_11": (
        req(b"GET /a HTTP/1.0", b"Connection: keep-alive", host=False) + req(b"GET /b HTTP/1.1"),
        [({"version": "1.0", "keep_alive": True}, b""), ({"version": "1.1"}, b"")],
    ),
    "pipelined_pri_method_second": (
        req(b"GET /a HTTP/1.1") + req(b"PRI /b HTTP/1.1"),
        [({"path": "/a"}, b""), ({"method": "PRI", "path": "/b"}, b"")],
    ),
}

# --- malformed corpus -----------------------------------------------------------------------------
# name -> (bytes, status). The parser must raise HttpError(status) under every split.

_G = b"GET / HTTP/1.1"

MALFORMED: dict[str, tuple[bytes, int]] = {
    # request smuggling: framing ambiguity (RFC 9112 §6.1, §6.3)
    "cl_te": (post(b"Content-Length: 5", CHUNKED, body=b"0\r\n\r\n"), 400),
    "te_cl": (post(CHUNKED, b"Content-Length: 5", body=b"0\r\n\r\n"), 400),
    "te_cl_zero": (post(CHUNKED, b"Content-Length: 0", body=b"0\r\n\r\n"), 400),
    "cl_te_gzip": (post(b"Content-Length: 5", b"Transfer-Encoding: gzip"), 400),
    "te_space_before_colon": (post(b"Transfer-Encoding : chunked", body=b"0\r\n\r\n"), 400),
    "te_tab_before_colon": (post(b"Transfer-Encoding\t: chunked", body=b"0\r\n\r\n"), 400),
    "cl_space_before_colon": (post(b"Content-Length : 5", body=b"hello"), 400),
    "te_xchunked": (post(b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), 501),
    "te_chunkedx": (post(b"Transfer-Encoding: chunkedx", body=b"0\r\n\r\n"), 501),
    "te_quoted": (post(b'Transfer-Encoding: "chunked"', body=b"0\r\n\r\n"), 501),
    "te_chunked_then_x": (post(CHUNKED, b"Transfer-Encoding: x", body=b"0\r\n\r\n"), 501),
    "te_x_then_chunked": (post(b"Transfer-Encoding: x", CHUNKED, body=b"0\r\n\r\n"), 501),
    "te_gzip": (post(b"Transfer-Encoding: gzip"), 501),
    "te_gzip_chunked": (post(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 501),
    "te_identity": (post(b"Transfer-Encoding: identity"), 501),
    "te_chunked_identity": (post(b"Transfer-Encoding: chunked, identity"), 501),
    "te_empty": (post(b"Transfer-Encoding:"), 501),
    "te_chunked_twice_list": (post(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), 400),
    "te_chunked_twice_fields": (post(CHUNKED, CHUNKED, body=b"0\r\n\r\n"), 400),
    "te_http10": (req(b"POST / HTTP/1.0", CHUNKED, body=b"0\r\n\r\n", host=False), 400),
    "te_vertical_tab": (post(b"Transfer-Encoding:\x0bchunked", body=b"0\r\n\r\n"), 400),
    "te_form_feed": (post(b"Transfer-Encoding: chunked\x0c", body=b"0\r\n\r\n"), 400),
    "te_nul": (post(b"Transfer-Encoding: chunked\x00", body=b"0\r\n\r\n"), 400),
    "te_obs_fold": (post(b"Transfer-Encoding:", b" chunked", body=b"0\r\n\r\n"), 400),
    "te_leading_space_first_field": (
        b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n0\r\n\r\n", 400),
    "te_bare_cr_injected": (post(b"X: a\rTransfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    "cl_plus": (post(b"Content-Length: +5", body=b"hello"), 400),
    "cl_minus": (post(b"Content-Length: -5", body=b"hello"), 400),
    "cl_list_conflict": (post(b"Content-Length: 5, 6", body=b"hello!"), 400),
    "cl_fields_conflict": (post(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"), 400),
    "cl_list_vs_field_conflict": (post(b"Content-Length: 5", b"Content-Length: 5, 6"), 400),
    "cl_hex": (post(b"Content-Length: 0x5", body=b"hello"), 400),
    "cl_empty": (post(b"Content-Length:"), 400),
    "cl_empty_list_element": (post(b"Content-Length: 5,,5", body=b"hello"), 400),
    "cl_inner_space": (post(b"Content-Length: 5 5"), 400),
    "cl_trailing_garbage": (post(b"Content-Length: 5abc", body=b"hello"), 400),
    "cl_decimal_point": (post(b"Content-Length: 5.0", body=b"hello"), 400),
    "cl_exponent": (post(b"Content-Length: 5e0", body=b"hello"), 400),
    "cl_underscore": (post(b"Content-Length: 1_0", body=b"helloworld"), 400),
    "cl_non_ascii_digit": (post(b"Content-Length: \xd9\xa5", body=b"hello"), 400),
    "cl_vertical_tab": (post(b"Content-Length:\x0b5", body=b"hello"), 400),
    "cl_over_body_limit": (post(b"Content-Length: 33554433"), 413),
    "cl_huge_number": (post(b"Content-Length: 99999999999999999999999999999999"), 413),
    "cl_more_digits_than_int_limit": (post(b"Content-Length: " + b"9" * 5000), 413),
    # chunked body syntax (RFC 9112 §7.1)
    "chunk_size_non_hex": (post(CHUNKED, body=b"5g\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_empty": (post(CHUNKED, body=b"\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_negative": (post(CHUNKED, body=b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_plus": (post(CHUNKED, body=b"+5\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_0x": (post(CHUNKED, body=b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_17_digits": (post(CHUNKED, body=b"00000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_leading_space": (post(CHUNKED, body=b" 5\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_size_huge_line": (post(CHUNKED, body=b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_data_not_crlf": (post(CHUNKED, body=b"5\r\nhelloX\r\n0\r\n\r\n"), 400),
    "chunk_data_bare_lf": (post(CHUNKED, body=b"5\r\nhello\n0\r\n\r\n"), 400),
    "chunk_data_bare_cr": (post(CHUNKED, body=b"5\r\nhello\r0\r\n\r\n"), 400),
    "chunk_data_overlong": (post(CHUNKED, body=b"3\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_ext_control": (post(CHUNKED, body=b"5;a=\x01\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_ext_nul": (post(CHUNKED, body=b"5;a\x00b\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_ext_bare_cr": (post(CHUNKED, body=b"5;a\rb\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk_last_ext_control": (post(CHUNKED, body=b"0;\x7f\r\n\r\n"), 400),
    "trailer_obs_fold": (post(CHUNKED, body=b"0\r\nX: a\r\n b\r\n\r\n"), 400),
    "trailer_no_colon": (post(CHUNKED, body=b"0\r\nnot a field\r\n\r\n"), 400),
    "trailer_nul": (post(CHUNKED, body=b"0\r\nX: a\x00b\r\n\r\n"), 400),
    "trailer_space_before_colon": (post(CHUNKED, body=b"0\r\nX : a\r\n\r\n"), 400),
    # request line (RFC 9112 §3)
    "rl_double_space": (req(b"GET  / HTTP/1.1"), 400),
    "rl_leading_space": (req(b" GET / HTTP/1.1"), 400),
    "rl_trailing_space": (req(b"GET / HTTP/1.1 "), 400),
    "rl_tab_separator": (req(b"GET\t/ HTTP/1.1"), 400),
    "rl_missing_version": (req(b"GET /"), 400),
    "rl_missing_target": (req(b"GET HTTP/1.1"), 400),
    "rl_method_only": (req(b"GET"), 400),
    "rl_empty_method": (req(b" / HTTP/1.1"), 400),
    "rl_lowercase_version": (req(b"GET / http/1.1"), 400),
    "rl_http2": (req(b"GET / HTTP/2.0"), 505),
    "rl_http09": (req(b"GET / HTTP/0.9"), 505),
    "rl_http3": (req(b"GET / HTTP/3.0"), 505),
    "rl_version_two_digits": (req(b"GET / HTTP/1.10"), 400),
    "rl_version_no_minor": (req(b"GET / HTTP/1"), 400),
    "rl_version_garbage": (req(b"GET / HTTPS/1.1"), 400),
    "rl_method_paren": (req(b"GE(T / HTTP/1.1"), 400),
    "rl_method_at": (req(b"G@T / HTTP/1.1"), 400),
    "rl_method_non_ascii": (req(b"G\xc3\x89T / HTTP/1.1"), 400),
    "rl_injected_second_version": (req(b"GET / HTTP/1.1 HTTP/1.1"), 400),
    "rl_bare_cr_injects_host": (b"GET / HTTP/1.1\rHost: evil\r\nHost: a\r\n\r\n", 400),
    "rl_nul": (req(b"GET /\x00 HTTP/1.1"), 400),
    "rl_two_empty_lines_first": (b"\r\n\r\n" + req(_G), 400),
    "target_space": (req(b"GET /a b HTTP/1.1"), 400),
    "target_control": (req(b"GET /a\x01b HTTP/1.1"), 400),
    "target_tab": (req(b"GET /a\tb HTTP/1.1"), 400),
    "target_del": (req(b"GET /a\x7f HTTP/1.1"), 400),
    "target_non_ascii": (req(b"GET /caf\xc3\xa9 HTTP/1.1"), 400),
    "target_fragment": (req(b"GET /a#frag HTTP/1.1"), 400),
    "target_bad_percent": (req(b"GET /a%zz HTTP/1.1"), 400),
    "target_short_percent": (req(b"GET /a%4 HTTP/1.1"), 400),
    "target_trailing_percent": (req(b"GET /a% HTTP/1.1"), 400),
    "target_percent_in_query": (req(b"GET /a?x=%g0 HTTP/1.1"), 400),
    "target_relative": (req(b"GET a/b HTTP/1.1"), 400),
    "target_authority_form_not_connect": (req(b"GET example.com:80 HTTP/1.1"), 400),
    "target_asterisk_not_options": (req(b"GET * HTTP/1.1"), 400),
    "target_asterisk_suffix": (req(b"OPTIONS *x HTTP/1.1"), 400),
    "target_absolute_bad_scheme": (req(b"GET ftp://example.com/ HTTP/1.1"), 400),
    "target_absolute_empty_authority": (req(b"GET http:///x HTTP/1.1"), 400),
    "connect_origin_form": (req(b"CONNECT / HTTP/1.1"), 400),
    "connect_no_port": (req(b"CONNECT example.com HTTP/1.1"), 400),
    "connect_absolute": (req(b"CONNECT http://example.com:80/ HTTP/1.1"), 400),
    # header fields (RFC 9112 §5, RFC 9110 §5.5)
    "field_no_colon": (req(_G, b"Foo bar"), 400),
    "field_empty_name": (req(_G, b": value"), 400),
    "field_space_before_colon": (req(_G, b"X-Foo : bar"), 400),
    "field_host_space_before_colon": (req(_G, b"Host : evil", host=False), 400),
    "field_tab_before_colon": (req(_G, b"X-Foo\t: bar"), 400),
    "field_space_in_name": (req(_G, b"X Foo: bar"), 400),
    "field_slash_in_name": (req(_G, b"X/Foo: bar"), 400),
    "field_non_ascii_name": (req(_G, b"X-F\xc3\xb6o: bar"), 400),
    "field_obs_fold": (req(_G, b"X-Foo: a", b" b"), 400),
    "field_obs_fold_tab": (req(_G, b"X-Foo: a", b"\tb"), 400),
    "field_first_line_space": (b"GET / HTTP/1.1\r\n Host: a\r\nHost: a\r\n\r\n", 400),
    "field_nul_in_value": (req(_G, b"X-Foo: a\x00b"), 400),
    "field_bare_cr_in_value": (req(_G, b"X-Foo: a\rb"), 400),
    "field_control_in_value": (req(_G, b"X-Foo: a\x01b"), 400),
    "field_escape_in_value": (req(_G, b"X-Foo: \x1b[31m"), 400),
    "field_del_in_value": (req(_G, b"X-Foo: a\x7f"), 400),
    "field_bare_cr_line_end_of_head": (b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", 400),
    "bare_lf_smuggles_second_host": (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\nHost: evil\r\n\r\n", 400),
    "host_missing": (req(_G, b"Accept: */*", host=False), 400),
    "host_missing_absolute_form": (req(b"GET http://example.com/ HTTP/1.1", host=False), 400),
    "host_duplicate": (req(_G, b"Host: evil.example"), 400),
    "host_duplicate_identical": (req(_G, b"Host: example.com"), 400),
    "host_duplicate_http10": (req(b"GET / HTTP/1.0", b"Host: a", b"Host: b", host=False), 400),
    "host_invalid_chars": (req(_G, b"Host: a b", host=False), 400),
    "host_invalid_slash": (req(_G, b"Host: a/b", host=False), 400),
    "host_obs_text": (req(_G, b"Host: caf\xe9", host=False), 400),
    # expectations (RFC 9110 §10.1.1)
    "expect_unknown": (post(b"Expect: something-else", b"Content-Length: 1", body=b"x"), 417),
    "expect_unknown_http10": (req(b"GET / HTTP/1.0", b"Expect: foo", host=False), 417),
    "expect_100_and_other": (post(b"Expect: 100-continue, foo", b"Content-Length: 1", body=b"x"), 417),
    "expect_two_fields": (post(b"Expect: 100-continue", b"Expect: bar", b"Content-Length: 1"), 417),
    "expect_empty": (req(_G, b"Expect:"), 417),
    # smuggling through the second message of a pipeline
    "pipelined_second_cl_te": (req(_G) + post(b"Content-Length: 4", CHUNKED, body=b"0\r\n\r\n"), 400),
    "pipelined_chunk_then_garbage": (post(CHUNKED, body=b"0\r\n\r\n") + b"GARBAGE\r\n\r\n", 400),
    "cl_body_then_smuggled_bad_request": (post(b"Content-Length: 4", body=b"abcdGET / HTTP/9.9\r\n\r\n"), 505),
}
