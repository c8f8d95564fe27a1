/*
 * Unit tests of src/http/tmpl.c: HTML escaping, names replaced by escaped
 * values, values marked as HTML copied as they are, things that are not names
 * left alone, the lookup for names a page does not set, the size limit.
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "http/tmpl.h"

static char *render(const char *t, const tc_tmpl_var *v, int n, tc_tmpl_lookup_fn f, void *ctx)
{
    tc_buf b = {0};
    if (tc_tmpl_render(&b, t, strlen(t), v, n, f, ctx) != 0 || tc_buf_append(&b, "", 1) != 0) {
        free(b.data);
        return NULL;
    }
    return b.data;
}

static const char *lookup(void *ctx, const char *name)
{
    (void)ctx;
    return strcmp(name, "static:app.css") == 0 ? "/static/app.1234abcd.css" : NULL;
}

static void test_escape(void)
{
    tc_buf b = {0};
    const char *s = "<script>alert('x') && \"y\"</script>";
    CHECK(tc_html_escape(&b, s, strlen(s)) == 0);
    CHECK(tc_buf_append(&b, "", 1) == 0);
    CHECK_EQ_STR(b.data,
                 "&lt;script&gt;alert(&#39;x&#39;) &amp;&amp; &quot;y&quot;&lt;/script&gt;");
    free(b.data);
}

static void test_render(void)
{
    tc_tmpl_var v[] = {
        {"title", "Tom & <Jerry>", false},
        {"items", "<li>ok</li>", true},
        {"attr", "\" onmouseover=\"x", false},
        {"none", NULL, false},
    };
    char *out = render("<h1>{{title}}</h1><ul>{{items}}</ul><a title=\"{{attr}}\">[{{none}}]</a>",
                       v, 4, NULL, NULL);
    CHECK_EQ_STR(out, "<h1>Tom &amp; &lt;Jerry&gt;</h1><ul><li>ok</li></ul>"
                      "<a title=\"&quot; onmouseover=&quot;x\">[]</a>");
    free(out);
    /* not names: copied as they are */
    out = render("{{ title }} {{}} {{title} {title}} {{ti tle}} {{{title}}} {{", v, 4, NULL, NULL);
    CHECK_EQ_STR(out, "{{ title }} {{}} {{title} {title}} {{ti tle}} {Tom &amp; &lt;Jerry&gt;} {{");
    free(out);
    /* unknown names render as nothing; the lookup answers the rest (escaped) */
    out = render("<link href=\"{{static:app.css}}\">{{missing}}.", v, 4, lookup, NULL);
    CHECK_EQ_STR(out, "<link href=\"/static/app.1234abcd.css\">.");
    free(out);
    /* a template cannot unescape a value: the same name, with any braces */
    tc_tmpl_var evil[] = {{"x", "<b>", false}};
    out = render("{{x}}{{{x}}}{{{{x}}}}", evil, 1, NULL, NULL);
    CHECK(out != NULL && strstr(out, "<b>") == NULL);
    free(out);
    out = render("", NULL, 0, NULL, NULL);
    CHECK_EQ_STR(out, "");
    free(out);
    char longname[200];
    memset(longname, 'a', sizeof(longname));
    memcpy(longname, "{{", 2);
    memcpy(longname + sizeof(longname) - 3, "}}", 3);
    out = render(longname, v, 4, NULL, NULL);
    CHECK_EQ_STR(out, longname); /* a name over 64 bytes is not a name */
    free(out);
}

static void test_limit(void)
{
    tc_buf b = {.max = 16};
    tc_tmpl_var v[] = {{"x", "0123456789abcdef0123", false}};
    CHECK(tc_tmpl_render(&b, "{{x}}", 5, v, 1, NULL, NULL) != 0);
    free(b.data);
}

int main(void)
{
    test_escape();
    test_render();
    test_limit();
    return check_report();
}
