#!/usr/bin/perl

# Tests for the Test::Nginx harness itself, against plain nginx (no waiting
# room configuration): static file, return, raw requests, start/http_end,
# port mapping, reload and stop.  Must pass with our t/lib/Test/Nginx.pm and
# with upstream nginx-tests' lib/Test/Nginx.pm placed in t/lib.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx qw/ :DEFAULT http_end http_content /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http rewrite/)->plan(17);

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location / { }

        location /ret {
            return 200 "generation GEN\n";
        }
    }

    server {
        listen       127.0.0.1:8081;
        server_name  localhost;

        location / {
            return 200 "second port\n";
        }
    }
}

EOF

(my $conf1 = $conf) =~ s/GEN/one/;
$t->write_file_expand('nginx.conf', $conf1);
$t->write_file('index.html', "static body\n");

# Neither harness adds a "user" directive: when the suite runs as root,
# workers run as nobody and need to reach files in the 0700 test directory.
chmod 0755, $t->testdir() if $> == 0;

$t->run();

###############################################################################

# ports: 8080 and 8081 are mapped to free ports, consistently

my $p = port(8080);
like($p, qr/^\d+$/, 'port number');
is(port(8080), $p, 'port stable');
isnt(port(8081), $p, 'ports distinct');
like($t->read_file('nginx.conf'), qr/listen\s+127\.0\.0\.1:$p;/,
	'port expanded');
unlike($t->read_file('nginx.conf'), qr/%%/, 'globals expanded');

# requests

like(http_get('/index.html'), qr!^HTTP/1\.1 200 .*\x0d\x0a\x0d\x0astatic body\n\z!s,
	'static file');
like(http_get('/ret'), qr/^HTTP\/1\.1 200 .*generation one$/ms, 'return');

my $r = http_head('/index.html');
like($r, qr/^HTTP\/1\.1 200 /, 'head');
unlike($r, qr/static body/, 'head no body');

like(http_get('/', PeerAddr => '127.0.0.1:' . port(8081)), qr/second port/,
	'PeerAddr');

like(http("POST /ret HTTP/1.0\nHost: localhost\nContent-Length: 5\n\n",
	body => 'hello'), qr/generation one/, 'raw request with body');

my $s = http_get('/ret', start => 1);
ok($s, 'start returns socket');
like(http_end($s), qr/generation one/, 'http_end');

$s = IO::Socket::INET->new(Proto => 'tcp',
	PeerAddr => '127.0.0.1:' . port(8080));
like(http_get('/ret', socket => $s), qr/generation one/, 'socket');

is(http_content("HTTP/1.1 200 OK\x0d\x0aTransfer-Encoding: chunked\x0d\x0a"
	. "\x0d\x0a5\x0d\x0ahello\x0d\x0a1\x0d\x0a!\x0d\x0a0\x0d\x0a\x0d\x0a"),
	'hello!', 'http_content dechunks');

# reload: upstream's reload() does not wait, so poll (bounded)

(my $conf2 = $conf) =~ s/GEN/two/;
$t->write_file_expand('nginx.conf', $conf2);
$t->reload();

for (1 .. 50) {
	$r = http_get('/ret');
	last if defined $r && $r =~ /generation two/;
	select undef, undef, undef, 0.1;
}
like($r, qr/generation two/, 'reload');

# stop: nginx is gone, the port no longer accepts connections

$t->stop();

ok(!IO::Socket::INET->new(Proto => 'tcp',
	PeerAddr => '127.0.0.1:' . port(8080)), 'stop');

###############################################################################
