#!/usr/bin/perl

# Tests for waiting_room_insert_heartbeat: admitted HTML pages get the
# heartbeat script after their last byte, whether nginx reads them from a
# file or an upstream sends them; other answers are left as they are.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx qw/ :DEFAULT http /;
use Test::Nginx::WaitingRoom qw/ get code body wr cookie req conf_test /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/)->plan(13);

my $page = "<!DOCTYPE html><html><head><title>p</title></head>"
	. "<body><p>origin page</p></body></html>\n";
$t->write_file('secret.key', 's' x 40);
mkdir $t->testdir() . '/h';
$t->write_file('h/p.html', $page);
$t->write_file('h/big.html', $page x 2000);
$t->write_file('h/data.json', "{}\n");
chmod 0755, $t->testdir() if $> == 0;

my ($ok, $out) = conf_test($t, "waiting_room_insert_heartbeat yes;");
ok(!$ok && index($out, 'invalid value "yes" in "waiting_room_insert_heartbeat" '
	. 'directive, it must be "on" or "off"') >= 0,
	'nginx -t: a bad value') or diag($out);

$t->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_secret secret.key;
    waiting_room_zone zone=w:1m max_active=1;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;
        waiting_room_insert_heartbeat on;

        location /h/ {
            waiting_room w;
        }
        location /up/ {
            waiting_room w;
            proxy_pass http://127.0.0.1:8081/h/;
        }
        location /gz/ {
            waiting_room w;
            proxy_pass http://127.0.0.1:8081/gz/;
        }
        location /plain/ {
            waiting_room w;
            waiting_room_insert_heartbeat off;
            alias %%TESTDIR%%/h/;
        }
        location /_wr/ { waiting_room_api w; }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        location /gz/ {
            add_header Content-Encoding gzip;
            default_type text/html;
            return 200 "not really gzip";
        }
    }
}

EOF

$t->run();

###############################################################################

my $tag = qq{\n<script src="/_wr/heartbeat.js" defer></script>\n};

my $r = get('/h/p.html');
is(wr($r), 'ADMITTED', 'admitted');
my $in = cookie($r, 'w');
is(body($r), $page . $tag, 'a file: the script after the page');
unlike($r, qr/^Content-Length:/mi, 'the length goes');

$r = http(req('/h/p.html', $in));
ok(wr($r) eq 'PASSED' && body($r) eq $page . $tag, 'a session passing: the script');

$r = http(req('/up/big.html', $in));
ok(wr($r) eq 'PASSED' && body($r) eq ($page x 2000) . $tag,
	'from an upstream, in pieces: the script once, at the end');

$r = http(req('/h/data.json', $in));
is(body($r), "{}\n", 'not HTML: nothing');

$r = http(req('/gz/x', $in));
is(body($r), 'not really gzip', 'compressed by the origin: nothing');

$r = http(req('/plain/p.html', $in));
is(body($r), $page, 'off: nothing');

$r = http(req('/h/p.html', $in) =~ s/^GET/HEAD/r);
ok(code($r) == 200 && body($r) eq '', 'HEAD: no body');

$r = http(req('/h/missing.html', $in));
ok(code($r) == 404 && index(body($r), 'heartbeat.js') < 0, '404: nothing');

# the queue page and a refusal are the room's own

$r = get('/h/p.html');
ok(wr($r) eq 'QUEUED' && index(body($r), $tag) < 0, 'the queue page: nothing');

$r = http("GET /h/p.html HTTP/1.0\nHost: localhost\n\n");
ok(wr($r) eq 'REFUSED' && index(body($r), 'heartbeat.js') < 0,
	'a refusal: nothing');

$t->stop();


###############################################################################
