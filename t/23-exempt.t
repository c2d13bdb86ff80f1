#!/usr/bin/perl

# Tests for exempt links (wr_exempt=): a valid link lets its bearer into a
# full room at once, with a 302 to the same URL without the link and a session
# cookie that then passes; a link is refused (and the visitor goes through the
# room as any other) when expired, tampered with, used up, made for another
# room, or brought by a request that is not a page load; links made by the
# control location and by scripts/waiting-room-link work; each use is logged;
# the uses survive a restart with a state file.

###############################################################################

use warnings;
use strict;

use Test::More;

use Digest::SHA qw/ hmac_sha256 sha256 /;
use MIME::Base64 qw/ encode_base64url decode_base64url /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx qw/ :DEFAULT http http_get /;
use Test::Nginx::WaitingRoom qw/ get first code wr cookie cookie_kind json
	status /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(40);

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_secret secret.key;
    waiting_room_zone zone=r:1m max_active=1 state=r.state;
    waiting_room_zone zone=o:1m max_active=1;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR $waiting_room_status always;

        location /r/ { waiting_room r; }
        location /_wr/ { waiting_room_api r; }
        location = /status { waiting_room_status r; }
        location = /control { waiting_room_control r; }

        location /o/ { waiting_room o api=/o/_wr/; }
        location /o/_wr/ { waiting_room_api o; }
        location = /o/status { waiting_room_status o; }
    }
}

EOF

my $secret = 's' x 40;
$t->write_file('secret.key', "$secret\n");
for my $room (qw/ r o /) {
	mkdir $t->testdir() . "/$room";
	$t->write_file("$room/p.html", "ORIGIN $room\n");
}
chmod 0755, $t->testdir() if $> == 0;

$t->write_file_expand('nginx.conf', $conf);
$t->run();

###############################################################################

# the rooms are full: A is in each, and a newcomer waits

my $a = cookie(get('/r/p.html'), 'r');
is(wr(get('/r/p.html', $a)), 'PASSED', 'A is in');
cookie(get('/o/p.html'), 'o');
is(wr(first('/r/p.html')), 'ARRIVED', 'a newcomer is sent to the line');

# a valid link: in at once, sent to the same URL without the link

my $hour = time() + 3600;
my $once = make_link('r', 0x1001, $hour, 1);
my $r = first("/r/p.html?x=1&wr_exempt=$once&y=2");
is(code($r), 302, 'a link: 302');
like($r, qr!^Location: (http://localhost(:\d+)?)?/r/p\.html\?x=1&y=2\s*$!m,
	'to the same URL without the link');
is(wr($r), 'EXEMPT', '$waiting_room_status EXEMPT');
my $b = cookie($r, 'r');
is(cookie_kind($b // ''), 2, 'a session cookie');
$r = get('/r/p.html?x=1&y=2', $b);
is(wr($r), 'PASSED', 'the session passes');
like($r, qr/ORIGIN r/, 'to the origin');
is(status()->{active_sessions}, 2, 'in over max_active');
like($t->read_file('error.log'),
	qr/\[notice\].*waiting room "r": exempt link 0000000000001001 used by 127\.0\.0\.1 \(1 of 1\)/,
	'the use logged');

# used up: the argument is ignored, the visitor goes through the room

$r = first("/r/p.html?wr_exempt=$once");
is(code($r) . ' ' . wr($r), '200 ARRIVED', 'a single-use link used again: the line');
like($t->read_file('error.log'),
	qr/\[info\].*exempt link 0000000000001001 from 127\.0\.0\.1 refused, it was used 1 of 1 times already/,
	'used up: logged');

# three uses

my $thrice = make_link('r', 0x1003, $hour, 3);
my @codes = map { code(first("/r/p.html?wr_exempt=$thrice")) } 1 .. 4;
is("@codes", '302 302 302 200', 'uses=3: three sessions, then the line');
like($t->read_file('error.log'), qr/exempt link 0000000000001003 used by [\d.]+ \(3 of 3\)/,
	'the third use logged');

# not a page load: the link is not used (a prefetch, a link preview)

my $later = make_link('r', 0x1004, $hour, 1);
$r = http_get("/r/p.html?wr_exempt=$later");
isnt(code($r), 302, 'not a page load: not let in');
is(code(first("/r/p.html?wr_exempt=$later")), 302, 'and the link still good');

# expired, tampered with, another room's, not a link

$r = first('/r/p.html?wr_exempt=' . make_link('r', 0x1005, time() - 10, 1));
is(code($r) . ' ' . wr($r), '200 ARRIVED', 'expired: the line');
like($t->read_file('error.log'), qr/\[info\].*exempt link from 127\.0\.0\.1 refused, it has expired/,
	'expired: logged');

my $forged = make_link('r', 0x1006, $hour, 1);
my $bytes = decode_base64url($forged);
substr($bytes, 21, 1) = chr(200);                    # uses 1 -> 200
$r = first('/r/p.html?wr_exempt=' . encode_base64url($bytes));
is(code($r) . ' ' . wr($r), '200 ARRIVED', 'tampered: the line');
like($t->read_file('error.log'),
	qr/\[warn\].*exempt link from 127\.0\.0\.1 refused, its signature does not match/,
	'tampered: logged at warn');
is(code(first("/r/p.html?wr_exempt=$forged")), 302, 'the original still good');

my $other = make_link('o', 0x1007, $hour, 1);
$r = first("/r/p.html?wr_exempt=$other");
is(code($r) . ' ' . wr($r), '200 ARRIVED', "another room's link: the line");
like($t->read_file('error.log'), qr/refused, it was made for another room/,
	"another room's link: logged");
is(code(first("/o/p.html?wr_exempt=$other")), 302, 'good in its own room');

is(code(first('/r/p.html?wr_exempt=nonsense')), 200, 'not a link: the line');

my $st = status();
is("$st->{exempt_used} $st->{exempt_refused}", '6 6', 'status: used and refused');

# made by the control location

my $made = json(control('{"link":{"path":"/r/p.html?a=b","uses":2,"expires_in":600}}'));
like($made->{link} // '', qr!^/r/p\.html\?a=b&wr_exempt=[\w-]{52}$!, 'control: a link');
is($made->{uses}, 2, 'control: its uses');
like($made->{expires} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, 'control: its expiry');
$r = first($made->{link});
like($r, qr!^Location: (http://localhost(:\d+)?)?/r/p\.html\?a=b\s*$!m,
	"control's link: in, sent on without it");
like($t->read_file('error.log'),
	qr/\[notice\].*exempt link [0-9a-f]{16} made by 127\.0\.0\.1 for \/r\/p\.html\?a=b, 2 uses until/,
	'control: the making logged');
is(code(control('{"link":{"path":"x"}}')), 400, 'control: a bad link request');
is(code(control('{"link":{"path":"/"},"max_active":2}')), 400,
	'control: a link alone');

# made by the script, from the secret file

my $script = "$FindBin::Bin/../scripts/waiting-room-link";
my $url = `python3 $script --secret ${\ $t->testdir()}/secret.key --room r --uses 1 --expires 10m /r/p.html`;
chomp $url;
like($url, qr!^/r/p\.html\?wr_exempt=[\w-]{52}$!, 'script: a link');
is(code(first($url)), 302, "script's link: in");

# a restart with the state file keeps the uses

my $twice = make_link('r', 0x1008, $hour, 2);
is(code(first("/r/p.html?wr_exempt=$twice")), 302, 'before a restart: first use');
select undef, undef, undef, 1.5;
$t->stop();
$t->run();

is(code(first("/r/p.html?wr_exempt=$twice")), 302, 'after the restart: second use');
is(code(first("/r/p.html?wr_exempt=$twice")), 200, 'and no third');
is(code(first("/r/p.html?wr_exempt=$once")), 200, 'a used link still used');
like($t->read_file('error.log'), qr/exempt link 0000000000001008 used by [\d.]+ \(2 of 2\)/,
	'the count went on');

$t->stop();

###############################################################################

# a link as the module makes it (src/core/link.rs)

sub make_link {
	my ($room, $id, $expires, $uses) = @_;
	my $key = hmac_sha256('ngx waiting room exempt link key v1', $secret);
	my $tag = substr(sha256("waiting_room link:$room"), 0, 4);
	my $payload = chr(1) . $tag . pack('Q<Q<v', $id, $expires, $uses);
	my $mac = substr(hmac_sha256($payload . $room, $key), 0, 16);
	return encode_base64url($payload . $mac);
}

sub control {
	my ($body) = @_;
	return http("POST /control HTTP/1.0\nHost: localhost\n"
		. 'Content-Length: ' . length($body) . "\n\n$body");
}

###############################################################################
