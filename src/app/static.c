/*
 * Static assets: every file of <web>/static, read once at start-up and served
 * from memory under a content-hashed name (app.css -> app.3f9a1c2b.css) with
 * `Cache-Control: public, max-age=31536000, immutable`. Text files also get a
 * gzip variant, compressed once at start-up, chosen by Accept-Encoding, with
 * its own ETag and `Vary: Accept-Encoding`.
 *
 * It is for: the fingerprinted URLs the templates reference (tc_app__asset_url).
 * It is not for: serving a directory. A request names an entry of the table
 * exactly or gets 404 no-store: an unhashed name (/static/app.css), a stale
 * hash, dot segments, %-escapes, a trailing segment are all simply not in the
 * table, so there is no path to traverse and no file is opened after start-up.
 *
 * Threads: built before the server starts, read-only afterwards; served on the
 * event thread (no I/O).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <xxhash.h>
#include <zlib.h>

#include "app/internal.h"
#include "http/cond.h"

#define ASSETS_MAX 256
#define ASSET_BYTES_MAX (8u << 20)
#define NAME_MAX_LEN 100

typedef struct asset {
    char name[NAME_MAX_LEN + 1]; /* "app.css" */
    char url[NAME_MAX_LEN + 32]; /* "/static/app.3f9a1c2b.css" */
    const char *ctype;
    unsigned char *data, *gz; /* gz: NULL when compressing would not pay */
    size_t len, gzlen;
    char etag[TC_ETAG_MAX], gz_etag[TC_ETAG_MAX];
    int64_t mtime;
} asset;

struct tc_assets {
    asset *v; /* sorted by url */
    int n;
    uint64_t hash;
};

static const struct {
    const char *ext, *ctype;
    bool text; /* worth a gzip variant */
} TYPES[] = {
    {"css", "text/css; charset=utf-8", true},
    {"js", "text/javascript; charset=utf-8", true},
    {"mjs", "text/javascript; charset=utf-8", true},
    {"json", "application/json", true},
    {"map", "application/json", true},
    {"svg", "image/svg+xml", true},
    {"txt", "text/plain; charset=utf-8", true},
    {"html", "text/html; charset=utf-8", true},
    {"xml", "application/xml", true},
    {"png", "image/png", false},
    {"jpg", "image/jpeg", false},
    {"jpeg", "image/jpeg", false},
    {"gif", "image/gif", false},
    {"webp", "image/webp", false},
    {"avif", "image/avif", false},
    {"ico", "image/x-icon", true},
    {"woff2", "font/woff2", false},
    {"woff", "font/woff", false},
    {"wasm", "application/wasm", true},
};

static int type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot != NULL && i < sizeof(TYPES) / sizeof(TYPES[0]); i++)
        if (strcmp(dot + 1, TYPES[i].ext) == 0)
            return (int)i;
    return -1;
}

static bool good_name(const char *s)
{
    if (s[0] == '.' || s[0] == '\0' || strlen(s) > NAME_MAX_LEN)
        return false;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '-' || *s == '_'))
            return false;
    return true;
}

/* A gzip member of data (deterministic: no name, mtime 0), or NULL when it
 * would not save at least a tenth. */
static unsigned char *gzip(const unsigned char *data, size_t len, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (len < 256 || deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    uLong cap = deflateBound(&z, (uLong)len) + 32;
    unsigned char *out = malloc(cap);
    if (out != NULL) {
        z.next_in = (unsigned char *)data;
        z.avail_in = (uInt)len;
        z.next_out = out;
        z.avail_out = (uInt)cap;
        if (deflate(&z, Z_FINISH) != Z_STREAM_END || z.total_out >= len - len / 10) {
            free(out);
            out = NULL;
        } else {
            *out_len = z.total_out;
        }
    }
    deflateEnd(&z);
    return out;
}

static int by_url(const void *a, const void *b)
{
    return strcmp(((const asset *)a)->url, ((const asset *)b)->url);
}

/* Adds name with its bytes (taken: the table frees them) to as. */
static int add_one(tc_assets *as, const char *name, unsigned char *data, size_t len,
                   int64_t mtime, char *err, size_t errlen)
{
    if (!good_name(name)) {
        snprintf(err, errlen, "%.*s: a static file's name is letters, digits, '.', '-', '_'",
                 NAME_MAX_LEN, name);
        free(data);
        return -1;
    }
    if (as->n == ASSETS_MAX) {
        snprintf(err, errlen, "more than %d static files", ASSETS_MAX);
        free(data);
        return -1;
    }
    asset *a = &as->v[as->n++];
    a->data = data;
    a->len = len;
    a->mtime = mtime;
    snprintf(a->name, sizeof(a->name), "%s", name);
    int t = type_of(name);
    a->ctype = t >= 0 ? TYPES[t].ctype : "application/octet-stream";
    uint64_t h = XXH3_64bits(a->data, a->len);
    const char *dot = strrchr(name, '.');
    size_t stem = dot != NULL ? (size_t)(dot - name) : strlen(name);
    snprintf(a->url, sizeof(a->url), "/static/%.*s.%08llx%s", (int)stem, name,
             (unsigned long long)(h >> 32), dot != NULL ? dot : "");
    tc_cachehdr_etag(h, NULL, a->etag);
    if (t >= 0 && TYPES[t].text && (a->gz = gzip(a->data, a->len, &a->gzlen)) != NULL)
        tc_cachehdr_etag(h, "-gz", a->gz_etag);
    return 0;
}

static int load_one(tc_assets *as, const char *dir, const char *name, char *err, size_t errlen)
{
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
        snprintf(err, errlen, "%s: path too long", name);
        return -1;
    }
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (f != NULL)
            fclose(f);
        return -1;
    }
    if ((size_t)st.st_size > ASSET_BYTES_MAX) {
        snprintf(err, errlen, "%s: larger than %u bytes", path, ASSET_BYTES_MAX);
        fclose(f);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    unsigned char *data = malloc(len + 1);
    if (data == NULL || fread(data, 1, len, f) != len) {
        snprintf(err, errlen, "%s: could not read it", path);
        free(data);
        fclose(f);
        return -1;
    }
    fclose(f);
    return add_one(as, name, data, len, (int64_t)st.st_mtime, err, errlen);
}

static tc_assets *assets_new(char *err, size_t errlen)
{
    tc_assets *as = calloc(1, sizeof(*as));
    if (as == NULL || (as->v = calloc(ASSETS_MAX, sizeof(asset))) == NULL) {
        snprintf(err, errlen, "static files: no memory");
        free(as);
        return NULL;
    }
    return as;
}

/* The table is complete: sorted by URL for the lookups, and hashed. */
static int assets_seal(tc_assets *as, char *err, size_t errlen)
{
    qsort(as->v, (size_t)as->n, sizeof(asset), by_url);
    XXH3_state_t *s = XXH3_createState();
    if (s == NULL) {
        snprintf(err, errlen, "static files: no memory");
        return -1;
    }
    XXH3_64bits_reset(s);
    for (int i = 0; i < as->n; i++)
        XXH3_64bits_update(s, as->v[i].url, strlen(as->v[i].url) + 1);
    as->hash = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    return 0;
}

tc_assets *tc_app__assets_load(const char *web_dir, char *err, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/static", web_dir);
    tc_assets *as = assets_new(err, errlen);
    if (as == NULL)
        return NULL;
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, errlen, "static files %s: %s", dir, strerror(errno));
        goto fail;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ., .., hidden files */
        char path[4096];
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path) ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue; /* flat: subdirectories are not served */
        if (load_one(as, dir, e->d_name, err, errlen) != 0)
            goto fail;
    }
    closedir(d);
    d = NULL;
    if (assets_seal(as, err, errlen) != 0)
        goto fail;
    return as;
fail:
    if (d != NULL)
        closedir(d);
    tc_app__assets_free(as);
    return NULL;
}

tc_assets *tc_app__assets_from(const tc_asset_file *files, int n, char *err, size_t errlen)
{
    tc_assets *as = assets_new(err, errlen);
    if (as == NULL)
        return NULL;
    for (int i = 0; i < n; i++) {
        unsigned char *data = malloc(files[i].len + 1);
        if (data == NULL) {
            snprintf(err, errlen, "static files: no memory");
            goto fail;
        }
        if (files[i].len > 0)
            memcpy(data, files[i].data, files[i].len);
        if (add_one(as, files[i].name, data, files[i].len, files[i].mtime, err, errlen) != 0)
            goto fail;
    }
    if (assets_seal(as, err, errlen) != 0)
        goto fail;
    return as;
fail:
    tc_app__assets_free(as);
    return NULL;
}

void tc_app__assets_free(tc_assets *as)
{
    if (as == NULL)
        return;
    for (int i = 0; as->v != NULL && i < as->n; i++) {
        free(as->v[i].data);
        free(as->v[i].gz);
    }
    free(as->v);
    free(as);
}

const char *tc_app__asset_url(const tc_assets *as, const char *name)
{
    for (int i = 0; as != NULL && i < as->n; i++)
        if (strcmp(as->v[i].name, name) == 0)
            return as->v[i].url;
    return NULL;
}

uint64_t tc_app__assets_hash(const tc_assets *as)
{
    return as != NULL ? as->hash : 0;
}

/* The asset whose URL is raw[0..len), or NULL. */
static const asset *find(const tc_assets *as, const char *raw, size_t len)
{
    asset key;
    if (as == NULL || len >= sizeof(key.url) || memchr(raw, '\0', len) != NULL)
        return NULL; /* a NUL would end the compared name early (fuzz/paths.c) */
    memcpy(key.url, raw, len);
    key.url[len] = '\0';
    return bsearch(&key, as->v, (size_t)as->n, sizeof(asset), by_url);
}

const char *tc_app__asset_find(const tc_assets *as, const char *raw, size_t len)
{
    const asset *a = find(as, raw, len);
    return a != NULL ? a->name : NULL;
}

static void not_found(tc_http_exchange *x)
{
    static const char body[] = "not found\n";
    tc_cachehdr_simple(x, TC_ROUTE_ERROR); /* a 404 under /static/ is never stored */
    tc_http_respond(x, 404, "text/plain; charset=utf-8", body, sizeof(body) - 1);
}

tc_http_action tc_app__static_serve(tc_app *app, tc_http_exchange *x)
{
    size_t len;
    const char *raw = tc_http_raw_path(x, &len);
    tc_http_method_id m = tc_http_method_id_of(x);
    if (m != TC_HTTP_M_GET && m != TC_HTTP_M_HEAD) {
        static const char body[] = "GET or HEAD only\n";
        tc_cachehdr_simple(x, TC_ROUTE_ERROR);
        tc_http_add_header(x, "Allow", "GET, HEAD");
        tc_http_respond(x, 405, "text/plain; charset=utf-8", body, sizeof(body) - 1);
        return TC_HTTP_DONE;
    }
    const asset *a = find(app->assets, raw, len);
    if (a == NULL) {
        not_found(x);
        return TC_HTTP_DONE;
    }
    bool gz = a->gz != NULL && tc_cond_accept_q(tc_http_header(x, "Accept-Encoding"), "gzip") > 0;
    tc_cachehdr h = {.cls = TC_ROUTE_STATIC,
                     .encodings = a->gz != NULL,
                     .etag = gz ? a->gz_etag : a->etag,
                     .last_modified = a->mtime};
    tc_http_add_header(x, "X-Content-Type-Options", "nosniff");
    if (tc_cachehdr_respond(x, &h) != 200)
        return TC_HTTP_DONE; /* 304 or 412: no body */
    tc_http_set_content_type(x, a->ctype);
    if (gz)
        tc_http_add_header(x, "Content-Encoding", "gzip");
    tc_http_set_body_static(x, gz ? a->gz : a->data, gz ? a->gzlen : a->len);
    return TC_HTTP_DONE;
}
