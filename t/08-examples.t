#!/usr/bin/perl

# Tests for the example configurations in nginx-conf/: each is started as it
# is, but for the module (loaded by the test globals), its pid and error log
# (the test's own), its ports (the test's) and its relative paths (under the
# test directory), and behaves as its comments say.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get post code body cookie log_errors /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy access/)->plan(37);
my $d = $t->testdir();
my $examples = "$FindBin::Bin/../nginx-conf";

mkdir "$d/logs";
mkdir "$d/html";
for my $f (glob "$examples/demo-html/*") {
	(my $name = $f) =~ s!.*/!!;
	$t->write_file("html/$name", slurp($f));
}
$t->write_file('waiting_room.key', '0123456789abcdef' x 4 . "\n");
chmod 0755, $d if $> == 0;

###############################################################################

# demo.conf: the shop front on 8000 (8080 here), the origin on 8001 (8081)

$t->write_file_expand('nginx.conf', adapt(slurp("$examples/demo.conf"),
	8000 => 8080, 8001 => 8081));
like($t->read_file('nginx.conf'), qr/listen 127\.0\.0\.1:${\ port(8080) };/,
	'demo: adapted');
$t->run();

my (@in, $r);
for my $n (1 .. 3) {
	$r = get('/');
	ok(code($r) == 200 && $r =~ /Demo shop/ && $r =~ /came from the origin/,
		"demo: visitor $n in");
	push @in, cookie($r, 'demo');
}

$r = get('/');
ok($r =~ m!You are number <strong id="pos">1</strong> in line!
	&& $r !~ /came from the origin/, 'demo: visitor 4 waits');
my $fourth = cookie($r, 'demo');
ok($fourth, 'demo: visitor 4 ticket');

like(get('/product.html', $in[0]), qr/A very popular product/,
	'demo: admitted visitor sees a product');
like(get('/product.html'), qr!You are number <strong id="pos">2</strong>!,
	'demo: visitor 5 waits for the product');

$r = get('/_wr/heartbeat.js');
ok(code($r) == 200 && $r =~ m!'/_wr/'!, 'demo: heartbeat.js');
is(code(post('/_wr/heartbeat', $in[1])), 204, 'demo: heartbeat');

my $st = json(http_get('/_wr_status'));
is(join(' ', @$st{qw/ room active_sessions max_sessions queue_length /}),
	'demo 3 3 2', 'demo: status');

is(code(post('/_wr/leave', $in[0])), 204, 'demo: leave');
$r = get('/_wr/position', $fourth);
is(json($r)->{state}, 'admitted', 'demo: visitor 4 let in');
like(get('/', cookie($r, 'demo')), qr/came from the origin/,
	'demo: visitor 4 in');

like($t->read_file('logs/access.log'),
	qr/"GET \/ HTTP\/1\.0" 200 room=ADMITTED pos=- wait=-/,
	'demo: access log, admitted');
like($t->read_file('logs/access.log'),
	qr/"GET \/ HTTP\/1\.0" 200 room=QUEUED pos=1 wait=\d+/,
	'demo: access log, queued');

$t->stop();

###############################################################################

# shop.conf: the checkout behind the room, the catalogue open

$t->write_file_expand('nginx.conf', adapt(slurp("$examples/shop.conf")));
$t->run();

$r = get('/catalogue/');
ok($r =~ /origin: \/catalogue\// && $r !~ /Set-Cookie/i,
	'shop: catalogue open');

$r = get('/checkout/cart');
like($r, qr/origin: \/checkout\/cart/, 'shop: checkout');
my $c = cookie($r, 'shop');
ok($c, 'shop: session cookie');
like(get('/checkout/pay', $c), qr/origin: \/checkout\/pay/, 'shop: passes');

$st = json(http_get('/waiting_room_status'));
is(join(' ', @$st{qw/ room active_sessions max_sessions /}), 'shop 1 200',
	'shop: status');

# 200 shoppers inside at once, then a line with a 503 queue page

my $in = 1;
for (2 .. 200) {
	$in++ if get('/checkout/') =~ /origin: \/checkout\//;
}
is($in, 200, 'shop: 200 inside');

$r = get('/checkout/');
is(code($r), 503, 'shop: 201st gets 503');
like($r, qr!You are number <strong id="pos">1</strong> in line!,
	'shop: queue page');

# our own probe is a crawler: no place, a short 503

$r = http("GET /checkout/ HTTP/1.0\nHost: localhost\nAccept: text/html\n"
	. "User-Agent: shop-probe/1.0\n\n");
ok(code($r) == 503 && $r !~ /Set-Cookie/i && $r !~ /id="pos"/,
	'shop: the probe is refused');

like($t->read_file('logs/shop.log'),
	qr/"GET \/checkout\/ HTTP\/1\.0" 503 QUEUED 1 \d+/,
	'shop: log');

# the key file was read: no random key

unlike($t->read_file('error.log'), qr/"shop": no waiting_room_secret/,
	'shop: secret used');

$t->stop();

###############################################################################

# tickets.conf: a lottery at a set start, a release rate, live control with a
# token; the start moved to a moment from now, the end to an hour later

my $start = time() + 4;
$t->write_file('control.token', "0123456789abcdef0123\n");
$t->write_file_expand('nginx.conf', adapt(slurp("$examples/tickets.conf"),
	start => $start, end => $start + 3600));
$t->run();

my $tok = "Authorization: Bearer 0123456789abcdef0123\n";
is(code(http("GET /_wr/control HTTP/1.0\nHost: localhost\n\n")), 401,
	'tickets: control needs the token');
$st = json(http("GET /_wr/control HTTP/1.0\nHost: localhost\n$tok\n"));
is(join(' ', @$st{qw/ model rate phase max_active /}),
	'lottery 120r/m before 500', 'tickets: settings before the start');

$r = get('/show');
like($r, qr/<div id="bs">/, 'tickets: the pre-queue page, counting down');
my $early = cookie($r, 'tickets');
my $pos = json(http("GET /_wr/position HTTP/1.0\nHost: localhost\n"
	. "Cookie: $early\n\n"));
ok($pos->{state} eq 'queued' && $pos->{starts_in} > 0 && $pos->{draw} == 1,
	'tickets: waiting for the draw');

# after the start, the draw: in with the next poll
select undef, undef, undef, 0.2 while time() < $start + 1.2;
$pos = json(http("GET /_wr/position HTTP/1.0\nHost: localhost\n"
	. "Cookie: $early\n\n"));
is($pos->{state}, 'admitted', 'tickets: in after the start');

# sold out: live, nobody new
$st = json(http("POST /_wr/control HTTP/1.0\nHost: localhost\n$tok"
	. "Content-Length: 17\n\n{\"mode\":\"reject\"}"));
is($st->{mode}, 'reject', 'tickets: closed live');
$r = get('/show');
ok(code($r) == 503 && $r =~ /Closed for now/, 'tickets: the closed page');
like($t->read_file('logs/tickets.log'), qr/ 503 CLOSED open reject -/,
	'tickets: log');
like($t->read_file('error.log'),
	qr/"tickets" changed at run time by 127\.0\.0\.1: mode normal -> reject/,
	'tickets: the change logged');

my $errors = log_errors($t);
is($errors, '', 'no errors logged');

###############################################################################

# The example as the test runs it: no load_module (the test globals load the
# module), the test's pid and error log, nginx in the foreground, ports
# mapped as asked, worker_processes 2 at least.

sub adapt {
	my ($conf, %ports) = @_;
	my ($start, $end) = delete @ports{qw/ start end /};
	$conf =~ s/\bstart=\S+/'start=' . utc($start)/e if defined $start;
	$conf =~ s/\bend=\S+/'end=' . utc($end)/e if defined $end;

	$conf =~ s/^\s*load_module\s[^;]*;[^\n]*\n//mg;
	$conf =~ s/^\s*(?:pid|error_log)\s[^;]*;[^\n]*\n//mg;
	$conf =~ s/^(\s*worker_processes)\s+[^;]*;/$1 2;/m;
	$conf = "%%TEST_GLOBALS%%\ndaemon off;\n\n" . $conf;
	$conf =~ s/^(http\s*\{[^\n]*\n)/$1    %%TEST_GLOBALS_HTTP%%\n/m;

	for my $from (keys %ports) {
		$conf =~ s/127\.0\.0\.1:$from\b/127.0.0.1:$ports{$from}/g;
	}
	return $conf;
}

sub utc {
	my ($time) = @_;
	my @t = gmtime($time);
	return sprintf('%04d-%02d-%02dT%02d:%02d:%02dZ',
		$t[5] + 1900, $t[4] + 1, @t[3, 2, 1, 0]);
}

sub slurp {
	my ($name) = @_;
	open my $fh, '<', $name or die "Can't open $name: $!";
	local $/;
	return scalar <$fh>;
}

# the body as JSON; {} if it is not

sub json {
	my ($r) = @_;
	require JSON::PP;
	return eval { JSON::PP::decode_json(body($r)) } || {};
}

###############################################################################
