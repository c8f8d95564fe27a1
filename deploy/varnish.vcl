# tiercache behind Varnish 7 (Debian 12: varnish 7.1 + varnish-modules for xkey).
#
#   varnishd -a :6081 -f /etc/varnish/tiercache.vcl -s malloc,256m
#   tiercache serve --listen 127.0.0.1:8080 --purge-url http://127.0.0.1:6081/
#
# What is shared is decided by the server's Cache-Control, never guessed here:
#   - only a response marked `public` is stored (blog queries, fingerprinted assets);
#     anything private, no-cache or no-store is passed (hit-for-miss), whoever asked;
#   - CDN-Cache-Control (RFC 9213), which the server sends on public responses and public
#     pages when it purges this cache (--purge-url), replaces Cache-Control here: its
#     max-age is the ttl and its stale-while-revalidate the grace, so pages (no-cache for
#     browsers) are kept too, until a purge drops them (docs/http-caching.md);
#   - so requests with Authorization or Cookie are looked up too (unlike the builtin VCL,
#     which passes them all): a stored object is public by construction, and a public
#     blog post is the same for a signed-in reader;
#   - public responses name their cache tags in `xkey`; when the server invalidates a tag
#     it sends `PURGE /` with `xkey: <tags>` from this machine, and xkey drops every
#     object that carries one of them (docs/http-caching.md).
# With --tag-header Surrogate-Key, copy it to xkey in vcl_backend_response (see there).
vcl 4.1;

import std;
import xkey;

backend tiercache {
    .host = "127.0.0.1";
    .port = "8080";
    .connect_timeout = 1s;
    .first_byte_timeout = 15s;
    .between_bytes_timeout = 10s;
}

# Who may purge: the tiercache processes on this machine.
acl purgers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        if (!req.http.xkey) {
            return (synth(400, "PURGE needs an xkey header"));
        }
        set req.http.n-gone = xkey.purge(req.http.xkey);
        return (synth(200, "Invalidated " + req.http.n-gone + " objects"));
    }
    # The server ignores these; never let them reach it from a client either.
    unset req.http.X-Forwarded-Host;
    unset req.http.X-Original-URL;
    unset req.http.X-Rewrite-URL;
    call vcl_req_host;
    call vcl_req_method; # not GET or HEAD: pass (mutations, login, webhooks)
    # No vcl_req_authorization / vcl_req_cookie: see the top of this file.
    return (hash);
}

sub vcl_backend_response {
    # With --tag-header Surrogate-Key: set beresp.http.xkey = beresp.http.Surrogate-Key;
    if (beresp.http.CDN-Cache-Control) {
        # Targeted at this cache: it wins over Cache-Control (RFC 9213), and is forwarded
        # as it is for a CDN in front of this one.
        if (beresp.http.CDN-Cache-Control !~ "(?i)(^|,)\s*public\s*(,|$)" ||
            beresp.http.CDN-Cache-Control !~ "(?i)(^|,)\s*max-age=[0-9]+" || beresp.http.Set-Cookie) {
            set beresp.uncacheable = true;
            set beresp.ttl = 120s;
            return (deliver);
        }
        set beresp.ttl = std.duration(regsub(beresp.http.CDN-Cache-Control,
            "(?i)^.*(^|,)\s*max-age=([0-9]+).*$", "\2") + "s", 0s);
        set beresp.grace = std.duration(regsub(beresp.http.CDN-Cache-Control,
            "(?i)^.*(^|,)\s*stale-while-revalidate=([0-9]+).*$", "\2") + "s", 0s);
        set beresp.keep = 10m;
        return (deliver);
    }
    if (beresp.http.Cache-Control !~ "(?i)(^|,)\s*public\s*(,|$)" || beresp.http.Set-Cookie) {
        # Not for sharing: remember that for 2 minutes (hit-for-miss) and pass.
        set beresp.uncacheable = true;
        set beresp.ttl = 120s;
        return (deliver);
    }
    # s-maxage / max-age give the ttl and stale-while-revalidate the grace (Varnish reads
    # both from Cache-Control). keep: revalidate an expired object with If-None-Match.
    set beresp.keep = 10m;
    return (deliver);
}

sub vcl_deliver {
    # RFC 9211: add this cache's entry after the server's (the list runs origin -> client).
    if (obj.uncacheable) {
        set req.http.tc-cs = "varnish; fwd=bypass";
        set resp.http.X-Cache = "PASS";
    } elsif (obj.hits > 0) {
        set req.http.tc-cs = "varnish; hit";
        set resp.http.X-Cache = "HIT";
    } else {
        set req.http.tc-cs = "varnish; fwd=miss; stored";
        set resp.http.X-Cache = "MISS";
    }
    if (resp.http.Cache-Status) {
        set resp.http.Cache-Status = resp.http.Cache-Status + ", " + req.http.tc-cs;
    } else {
        set resp.http.Cache-Status = req.http.tc-cs;
    }
    unset resp.http.xkey; # the tags are this cache's business
}
