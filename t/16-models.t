#!/usr/bin/perl

# Tests for who goes in, and when: the admission models (fifo, random,
# lottery), the release rate, an event's start (a pre-queue, then the draw)
# and end, the modes (queue, reject, pass), the variables that show them, and
# the parameters nginx -t refuses.  Run-time control is in t/17-control.t.

###############################################################################

use warnings;
use strict;

use Test::More;
use POSIX qw/ strftime /;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx qw/ :DEFAULT http http_get /;
use Test::Nginx::WaitingRoom qw/ get api code body wr pos_of cookie json
	status conf_test /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http/)->plan(32);

$t->write_file('secret.key', 's' x 40);
for my $room (qw/ f r l rt q x p o /) {
	mkdir $t->testdir() . "/$room";
	$t->write_file("$room/p.html", "ORIGIN $room\n");
}
chmod 0755, $t->testdir() if $> == 0;

# the parameters nginx -t refuses

my @bad = (
	['model=best', 'invalid model value "best"'],
	['mode=off', 'invalid mode value "off"'],
	['rate=5', 'invalid rate value "5"'],
	['rate=0r/s', 'invalid rate value "0r/s"'],
	['start=tomorrow',
		'invalid start value "tomorrow", a time in UTC like 2026-11-27T09:00:00Z'],
	['end=2026-11-27T09:00:00+01:00', 'invalid end value'],
	['start=2026-11-27T10:00:00Z end=2026-11-27T09:00:00Z',
		'"end" must be after "start"'],
);
for my $case (@bad) {
	my ($param, $want) = @$case;
	my ($ok, $out) = conf_test($t, "waiting_room_zone zone=z:1m $param;");
	ok(!$ok && index($out, $want) >= 0, "nginx -t: $param")
		or diag($out);
}

# the lottery's draw: a few seconds from now, as nginx reads the time
my $start = int(time()) + 5;
my $start_text = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime($start));

$t->write_file_expand('nginx.conf', <<"EOF");

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_secret secret.key;
    waiting_room_zone zone=f:1m max_active=1;
    waiting_room_zone zone=r:1m max_active=1 model=random;
    waiting_room_zone zone=l:1m max_active=1 model=lottery start=$start_text;
    waiting_room_zone zone=rt:1m max_active=100 rate=120r/m;
    waiting_room_zone zone=q:1m max_active=5 mode=queue;
    waiting_room_zone zone=x:1m max_active=5 mode=reject;
    waiting_room_zone zone=p:1m max_active=1 mode=pass;
    waiting_room_zone zone=o:1m max_active=5 end=2020-01-01T00:00:00Z;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        add_header X-WR \$waiting_room_status always;
        add_header X-Steer "\$waiting_room_mode \$waiting_room_model \$waiting_room_phase \$waiting_room_rate" always;

        location /f/ { waiting_room f api=/f/_wr/; }
        location /f/_wr/ { waiting_room_api f; }
        location /r/ { waiting_room r api=/r/_wr/; }
        location /r/_wr/ { waiting_room_api r; }
        location /l/ { waiting_room l api=/l/_wr/; }
        location /l/_wr/ { waiting_room_api l; }
        location = /l/status { waiting_room_status l; }
        location /rt/ { waiting_room rt api=/rt/_wr/; }
        location /rt/_wr/ { waiting_room_api rt; }
        location = /rt/status { waiting_room_status rt; }
        location /q/ { waiting_room q api=/q/_wr/; }
        location /q/_wr/ { waiting_room_api q; }
        location /x/ {
            waiting_room x api=/x/_wr/;
            waiting_room_closed_status 410;
        }
        location /x/_wr/ { waiting_room_api x; }
        location /p/ { waiting_room p api=/p/_wr/; }
        location /p/_wr/ { waiting_room_api p; }
        location = /p/status { waiting_room_status p; }
        location /o/ { waiting_room o api=/o/_wr/; }
        location /o/_wr/ { waiting_room_api o; }
    }
}

EOF

$t->run();

###############################################################################

# lottery: before the start everyone waits, slots free or not; at the start
# those in line are drawn, those who come after queue behind them in order

my @early = map { (visit('l'))[0] } 1 .. 3;
my $r = visit_page('/l/p.html', $early[0]);
ok(code($r) == 200 && wr($r) eq 'QUEUED', 'lottery: the pre-queue page');
like($r, qr/^X-Steer: normal lottery before \s*$/m, 'lottery: phase before');
my $p = json(api('GET', 'position', $early[1], '/l/_wr/'));
ok($p->{starts_in} > 0 && $p->{draw} == 3, 'lottery: starts_in and the draw')
	or diag(explain($p));
is(status('/l/status')->{active_sessions}, 0, 'lottery: nobody in before the start');

select undef, undef, undef, 0.1 while time() < $start + 1.2;
my @late = map { (visit('l'))[0] } 1 .. 2;
# (a request that is no page load: it takes no place, and lets nobody in)
like(http_get('/l/p.html'), qr/^X-Steer: normal lottery open\s*$/m,
	'lottery: phase open');
my $st = status('/l/status');
ok($st->{phase} eq 'open' && $st->{model} eq 'lottery', 'lottery: status');
my @order = serve('l', undef, @early, @late);
is(join(' ', sort { $a <=> $b } @order[0 .. 2]), '0 1 2',
	'lottery: the draw first');
is(join(' ', @order[3, 4]), '3 4', 'lottery: then the later ones, in order');

# fifo: in the order they came, as the one inside leaves

my ($in) = visit('f');
my @line = map { (visit('f'))[0] } 1 .. 4;
is(join(' ', map { pos_in('f', $_) } @line), '1 2 3 4', 'fifo: places');
is(join(' ', serve('f', $in, @line)), '0 1 2 3', 'fifo: served in order');

# random: any of those waiting, each as likely; 8 in line, so the first-come
# order comes out once in 40320 runs

($in) = visit('r');
@line = map { (visit('r'))[0] } 1 .. 8;
$p = json(api('GET', 'position', $line[3], '/r/_wr/'));
ok($p->{state} eq 'queued' && $p->{draw} == 8 && $p->{position} == 8,
	'random: the draw among 8') or diag(explain($p));
like(http_get('/r/p.html'), qr/^X-Steer: normal random open\s*$/m,
	'random: the variables');
@order = serve('r', $in, @line);
is(join(' ', sort { $a <=> $b } @order), '0 1 2 3 4 5 6 7', 'random: all served');
isnt(join(' ', @order), '0 1 2 3 4 5 6 7', 'random: not in arrival order');
note("random order: @order");

# rate: 120r/m lets 2 in at once and 2 a second after, however many slots
# are free; newcomers every 100 ms for 4 s, and those in line ask again

my (@waiting, $admitted);
my $t0 = time();
while (time() - $t0 < 4) {
	my ($c, $kind) = visit('rt');
	if ($kind eq 'in') {
		$admitted++;
	} else {
		push @waiting, $c;
	}
	@waiting = grep {
		my $s = json(api('GET', 'position', $_, '/rt/_wr/'))->{state};
		$admitted++ if $s eq 'admitted';
		$s ne 'admitted';
	} @waiting;
	select undef, undef, undef, 0.1;
}
my $secs = time() - $t0;
$st = status('/rt/status');
note(sprintf('rate 120r/m: %d admitted in %.1f s (%.0f a minute), %d waiting',
	$admitted, $secs, 60 * ($admitted - 2) / $secs, scalar @waiting));
ok($admitted <= 2 + 2 * $secs + 1, 'rate: no more than the rate');
ok($admitted >= 2 * $secs - 2, 'rate: as many as the rate allows');
is($st->{rate}, '120r/m', 'rate: in the status');

# queue: everyone new waits, slots free or not

$r = visit_page('/q/p.html');
is(wr($r), 'ARRIVED', 'queue: a newcomer is sent to the line');
my ($c, $kind) = visit('q');
is($kind, 'queued', 'queue: with 5 free slots');

# reject: newcomers get the closed page with the configured status

$r = visit_page('/x/p.html');
ok(code($r) == 410 && wr($r) eq 'CLOSED' && $r =~ /Closed for now/
	&& !cookie($r, 'x'), 'reject: the closed page, no cookie');

# pass: in while a slot is free (counted), through without a place after

($c, $kind) = visit('p');
is($kind, 'in', 'pass: in while a slot is free');
$r = visit_page('/p/p.html');
ok(wr($r) eq 'OFF' && $r =~ /ORIGIN p/ && !cookie($r, 'p'),
	'pass: through without a place');
$st = status('/p/status');
is(join(' ', @$st{qw/ active_sessions passed_off mode /}), '1 1 pass',
	'pass: counted');
$r = http_get('/p/p.html');
ok(wr($r) eq 'OFF' && $r =~ /ORIGIN p/, 'pass: an image or a fetch goes through too');

# the event over: newcomers get the over page

$r = visit_page('/o/p.html');
ok(code($r) == 503 && wr($r) eq 'OVER' && $r =~ /The event is over/,
	'over: the over page');

###############################################################################

# a page load, with a cookie if given

sub visit_page {
	my ($uri, $cookie) = @_;
	return http(Test::Nginx::WaitingRoom::req($uri, $cookie));
}

# a new visitor of $room: their cookie, and 'in' or 'queued'

sub visit {
	my ($room) = @_;
	my $r = get("/$room/p.html");
	my $c = cookie($r, $room);
	return ($c, $r =~ /ORIGIN $room/ ? 'in' : 'queued');
}

sub pos_in {
	my ($room, $c) = @_;
	my $j = json(api('GET', 'position', $c, "/$room/_wr/"));
	return $j->{state} eq 'queued' ? $j->{position} : $j->{state};
}

# the one inside ($in, if any) leaves; then, round after round, everyone in
# line asks, the one let in leaves: the order (indexes of @line) they got in

sub serve {
	my ($room, $in, @line) = @_;
	my $api = "/$room/_wr/";
	api('POST', 'leave', $in, $api) if defined $in;
	my (@order, %done);
	for (1 .. 50) {
		last if @order == @line;
		for my $i (0 .. $#line) {
			next if $done{$i};
			my $r = api('GET', 'position', $line[$i], $api);
			next unless json($r)->{state} eq 'admitted';
			$done{$i} = 1;
			push @order, $i;
			# the answer that let them in carries the session cookie
			api('POST', 'leave', cookie($r, $room), $api);
			last;
		}
		select undef, undef, undef, 0.05;
	}
	return @order;
}

###############################################################################
