#!/usr/bin/perl

# Tests for steering a room while it runs, from its control location
# (waiting_room_control): what GET shows; each change (max_active, mode,
# model, rate, start, end, reset) in force at once for newcomers on both
# workers; a bad change refused whole (400, nothing applied); the token (401),
# other methods (405), long bodies (413); each change logged at notice; a
# reload keeps what was changed at run time unless nginx.conf changed that
# same setting.  Then a flash sale of 200 visitors steered live: 0 FIFO
# inversions, never more inside than max_active.  Also what nginx -t refuses.

###############################################################################

use warnings;
use strict;

use Test::More;
use POSIX qw/ strftime /;
use Time::HiRes qw/ time /;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx;
use Test::Nginx::WaitingRoom qw/ get first api code body wr pos_of cookie json
	reload_to conf_test /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http access rewrite/)->plan(101);

my $token = 'Tok-0123456789-abcdefXYZ';
$t->write_file('secret.key', 'k' x 40 . "\n");
$t->write_file('control.token', "$token\n");
$t->write_file('short.token', "0123456789abcde\n");
$t->write_file('spaced.token', "0123456789 abcdefghij\n");
for my $room (qw/ m s /) {
	mkdir $t->testdir() . "/$room";
	$t->write_file("$room/p.html", "ORIGIN $room\n");
}
chmod 0755, $t->testdir() if $> == 0;

###############################################################################

# what nginx -t refuses

my $z = 'waiting_room_zone zone=z:1m max_active=5;';
my $loc = sub { "$z server { location /c { @_ } location / { waiting_room z; } "
	. "location /_wr/ { waiting_room_api z; } }" };
my @bad = (
	[$loc->('waiting_room_control z token=short.token;'),
		qr/token file "[^"]*short\.token" must start with a token of at least 16 visible characters/,
		'a token of 15 characters'],
	[$loc->('waiting_room_control z token=spaced.token;'),
		qr/token file "[^"]*spaced\.token" must start with a token of at least 16 visible characters/,
		'a token with a space'],
	[$loc->('waiting_room_control z token=missing.token;'),
		qr/missing\.token/, 'no token file'],
	[$loc->('waiting_room_control z token=;'), qr/invalid parameter "token="/,
		'an empty token file name'],
	[$loc->('waiting_room_control z key=control.token;'),
		qr/invalid parameter "key=control.token"/, 'an unknown parameter'],
	[$loc->('waiting_room_control nope;'), qr/unknown waiting room "nope"/,
		'an unknown room'],
	["$z server { waiting_room_control z; }",
		qr/"waiting_room_control" directive is not allowed here/,
		'waiting_room_control in a server block'],
	[$loc->('waiting_room z; waiting_room_closed_status 302;'),
		qr/invalid value "302", it must be 200, 403, 404, 410 or 503/,
		'waiting_room_closed_status 302'],
	["$z waiting_room_closed_status 500;", qr/invalid value "500"/,
		'waiting_room_closed_status 500'],
);
for my $case (@bad) {
	my ($http, $want, $name) = @$case;
	my ($ok, $out) = conf_test($t, $http);
	ok(!$ok && $out =~ $want, "nginx -t refuses $name") or diag($out);
}
my ($ok, $out) = conf_test($t, $loc->('waiting_room_control z token=control.token;')
	. ' waiting_room_closed_status 410;');
ok($ok, 'nginx -t takes a good token file and a closed status') or diag($out);

###############################################################################

$t->write_file_expand('nginx.conf', conf(1, 'one'));
$t->run();

my $mapi = '/m/_wr/';
my (@held, %pids);

###############################################################################

# reading

my $c = json(http_get('/m/control'));
is(join(' ', sort keys %$c), 'changes configured end in_draw max_active mode '
	. 'model phase rate room session_capacity start', 'GET: the fields');
is(join(' ', map { $c->{$_} // 'null' }
	qw/ room max_active mode model rate start end phase in_draw changes /),
	'm 1 normal fifo null null null open 0 0', 'GET: the settings in force');
is_deeply($c->{configured}, { max_active => 1, mode => 'normal',
	model => 'fifo', rate => undef, start => undef, end => undef },
	'GET: the settings of nginx.conf');
my $cap = $c->{session_capacity};
ok($cap && $cap >= 2, "GET: session_capacity $cap");
my $r = http("HEAD /m/control HTTP/1.0\nHost: localhost\n\n");
ok(code($r) == 200 && body($r) eq '', 'HEAD: 200, no body');

# max_active, for newcomers on both workers at once

$c = ctl('{"max_active": 3}');
is(join(' ', @$c{qw/ max_active changes /}) . ' ' . $c->{configured}{max_active},
	'3 1 1', 'max_active 1 -> 3: in force, counted, nginx.conf\'s kept aside');
is(kinds(4), 'ADMITTED ADMITTED ADMITTED QUEUED', 'max_active 3: 3 let in');
like($t->read_file('error.log'), qr/\[notice\] .*waiting room "m" changed at run time by 127\.0\.0\.1: max_active 1 -> 3(?:, |\x0d?$)/m,
	'max_active: the change logged at notice');
leave_all();

# two at once: max_active and mode queue; with 5 slots free, all wait

$c = ctl('{"max_active": 5, "mode": "queue"}');
is("$c->{max_active} $c->{mode}", '5 queue', 'max_active and mode: in force');
like($t->read_file('error.log'),
	qr/waiting room "m" changed at run time by 127\.0\.0\.1: max_active 3 -> 5, mode normal -> queue/,
	'max_active and mode: logged with old and new values');
my @v = visitors(6);
ok(!grep({ $_->{wr} ne 'QUEUED' || $_->{r} !~ /^X-Mode: queue\x0d?$/m } @v),
	'mode queue: every newcomer waits, slots free') or diag(kinds_of(@v));
my $st = json(http_get('/m/status'));
is("$st->{active_sessions} $st->{queue_length} $st->{mode} $st->{control_changes}",
	'0 6 queue 2', 'mode queue: the status');
leave_all();

# mode normal, model random: newcomers let in, then drawn among those waiting

$c = ctl('{"mode": "normal", "model": "random"}');
@v = visitors(8);
is(kinds_of(@v), join(' ', ('ADMITTED') x 5, ('QUEUED') x 3),
	'mode normal: 5 let in, then the line');
ok(!grep({ $_->{r} !~ /^X-Model: random\x0d?$/m } @v), 'model random: the variable');
my @p = map { json(api('GET', 'position', $_->{c}, $mapi)) } @v[5 .. 7];
ok(!grep({ $_->{draw} != 3 } @p), 'model random: turns drawn among the 3')
	or diag(explain(\@p));
leave_all();

# rate: 60r/m lets newcomers in one a second, with 5 slots free

$c = ctl('{"model": "fifo", "rate": "60r/m"}');
is($c->{rate}, '60r/m', 'rate 60r/m: in force');
@v = visitors(4);
my $in = grep { $_->{wr} eq 'ADMITTED' } @v;
ok($in <= 2 && !grep({ $_->{r} !~ /^X-Rate: 60r\/m\x0d?$/m } @v),
	"rate 60r/m: $in of 4 newcomers let in at once");
select undef, undef, undef, 1.5;
my $later = grep { poll($_->{c}) eq 'admitted' }
	grep { $_->{wr} eq 'QUEUED' } @v;
ok($later >= 1 && $later <= 2, "rate 60r/m: $later more a second and a half later");
$c = ctl('{"rate": "2r/s"}');
ok($c->{rate} eq '120r/m' || $c->{rate} eq '2r/s', "rate 2r/s: shown as $c->{rate}");
$c = ctl('{"rate": "off"}');
ok(!defined $c->{rate}, 'rate "off": none');
$c = ctl('{"rate": "90r/m"}');
is($c->{rate}, '90r/m', 'rate 90r/m');
$c = ctl('{"rate": null}');
ok(!defined $c->{rate}, 'rate null: none');
leave_all();
@v = visitors(5);
is(kinds_of(@v), join(' ', ('ADMITTED') x 5), 'no rate: 5 let in at once');
ok(!grep({ $_->{r} =~ /^X-Rate:/m } @v), 'no rate: $waiting_room_rate empty');
leave_all();

# start: ahead, everyone waits with slots free; a change refused whole; the
# start taken away, the pre-queue is let in

my $start = utc(time() + 30);
$c = ctl(qq({"start": "$start"}));
is("$c->{phase} $c->{start}", "before $start", 'start ahead: phase before');
@v = visitors(4);
ok(!grep({ $_->{wr} ne 'QUEUED' || $_->{r} !~ /^X-Phase: before\x0d?$/m } @v),
	'start ahead: every newcomer waits, 5 slots free') or diag(kinds_of(@v));
my $pj = json(api('GET', 'position', $v[0]{c}, $mapi));
ok($pj->{starts_in} && $pj->{starts_in} > 20 && $pj->{starts_in} <= 31,
	'start ahead: starts_in') or diag(explain($pj));
is(json(http_get('/m/status'))->{active_sessions}, 0, 'start ahead: nobody in');

my $before = http_get('/m/control');
my $n = changes_logged($t->read_file('error.log'));
$r = post('/m/control', sprintf('{"max_active": 3, "end": "%s"}', utc(time() - 3600)));
ok(code($r) == 400 && (json($r)->{error} // '') =~ /after/,
	'an end before the start: 400');
ok(body(http_get('/m/control')) eq body($before)
	&& changes_logged($t->read_file('error.log')) == $n,
	'an end before the start: nothing applied, nothing logged');

$c = ctl('{"start": null}');
ok(!defined $c->{start} && $c->{phase} eq 'open', 'start taken away: open');
my @states = map { poll($_->{c}) } @v;
is("@states", 'admitted admitted admitted admitted', 'start taken away: the pre-queue let in');
@v = visitors(3);
is(kinds_of(@v), 'ADMITTED QUEUED QUEUED', 'then full: the line');

# end: past, newcomers get the over page; inside and in line go on

$c = ctl(sprintf('{"end": "%s"}', utc(time() - 60)));
is($c->{phase}, 'over', 'end passed: phase over');
$r = first('/m/p.html');
ok(code($r) == 503 && wr($r) eq 'OVER' && $r =~ /^X-Phase: over\x0d?$/m,
	'end passed: the over page');
like(get('/m/p.html', $v[0]{c}), qr/^X-WR: PASSED/m, 'end passed: inside, goes on');
$r = get('/m/p.html', $v[1]{c});
ok(wr($r) eq 'QUEUED' && pos_of($r) == 1, 'end passed: in line, keeps the place');
api('POST', 'leave', $v[0]{c}, $mapi);
is(poll($v[1]{c}), 'admitted', 'end passed: in line, called as a slot frees');
$c = ctl('{"end": null}');
ok(!defined $c->{end} && $c->{phase} eq 'open', 'end taken away: open');
leave_all();

# reset: back to nginx.conf, then reset with a change

ctl('{"max_active": 4, "mode": "queue", "model": "lottery", "rate": "90r/m"}');
$c = ctl('{"reset": true}');
is(join(' ', map { $c->{$_} // 'null' } qw/ max_active mode model rate start end /),
	'1 normal fifo null null null', 'reset: the settings of nginx.conf');
is(kinds(2), 'ADMITTED QUEUED', 'reset: max_active 1 in force');
leave_all();
$c = ctl('{"reset": true, "mode": "queue", "max_active": 2}');
is(join(' ', map { $c->{$_} // 'null' } qw/ max_active mode model rate /),
	'2 queue fifo null', 'reset with changes: applied after the reset');
is(kinds(2), 'QUEUED QUEUED', 'reset with changes: in force');
leave_all();
ctl('{"mode": "normal"}');

# lottery put in force while 5 wait: they are drawn at once; those who come
# after queue behind them, in order

ctl('{"max_active": 1}');
my ($lin, @drawn) = map { $_->{c} } visitors(6);
$c = ctl('{"model": "lottery"}');
is("$c->{model} $c->{in_draw}", 'lottery 5', 'lottery in force: the 5 waiting drawn');
my @after = map { $_->{c} } visitors(2);
@p = map { json(api('GET', 'position', $_, $mapi)) } @after, $drawn[0];
is(join(' ', map { "$_->{position}/$_->{draw}" } @p), '6/0 7/0 5/5',
	'lottery in force: the drawn ones among 5, then fixed places');
my @lorder = serve_m($lin, @drawn, @after);
ok(join(' ', sort { $a <=> $b } @lorder[0 .. 4]) eq '0 1 2 3 4'
	&& "@lorder[5, 6]" eq '5 6', 'lottery in force: the drawn, then the rest in order')
	or diag("@lorder");
note("lottery in force: order @lorder");
leave_all();
ctl('{"model": "fifo", "max_active": 2}');

###############################################################################

# a bad change is refused whole, with a 400 and a reason: nothing applies

$before = http_get('/m/control');
$n = changes_logged($t->read_file('error.log'));
my @refused = (
	'{"max_active": 3, "start": "2030-01-01T10:00:00Z", "end": "2030-01-01T09:00:00Z"}',
	'{"max_active": 0}',
	'{"max_active": ' . ($cap + 1) . '}',
	'{"max_active": "3"}',
	'{"max_active": 3, "mode": "closed"}',
	'{"max_active": 3, "model": "best"}',
	'{"max_active": 3, "rate": "fast"}',
	'{"max_active": 3, "rate": "0r/s"}',
	'{"max_active": 3, "start": "tomorrow"}',
	'{"max_active": 3, "end": "2030-01-01T10:00:00+01:00"}',
	'{"max_active": 3, "colour": "red"}',
	'{"max_active": 3, "reset": "yes"}',
	'[{"max_active": 3}]',
	'{"max_active": 3',
	'max_active=3',
);
my @codes = map { my $x = post('/m/control', $_); code($x) . (json($x)->{error} ? '' : '-') } @refused;
is("@codes", join(' ', ('400') x @refused), '400 with an error for each bad change');
like(json(post('/m/control', '{"colour": "red"}'))->{error}, qr/colour/,
	'an unknown setting named');
is(body(http_get('/m/control')), body($before), 'nothing of a refused change applied');
is(changes_logged($t->read_file('error.log')), $n, 'nothing of a refused change logged');
is(kinds(3), 'ADMITTED ADMITTED QUEUED', 'still max_active 2 for newcomers');
leave_all();

# max_active up to session_capacity

is(ctl(qq({"max_active": $cap}))->{max_active}, $cap, 'max_active = session_capacity: taken');
ctl('{"max_active": 2}');

# the token; other methods; long bodies

$r = http_get('/m/locked');
ok(code($r) == 401 && $r =~ /^WWW-Authenticate: Bearer/mi, 'token: GET without it, 401');
is(code(post('/m/locked', '{"mode": "reject"}')), 401, 'token: POST without it, 401');
is(code(post('/m/locked', '{"mode": "reject"}', "Bearer ${token}x")), 401,
	'token: a wrong one, 401');
is(code(post('/m/locked', '{"mode": "reject"}', 'Bearer ' . substr($token, 0, 16))),
	401, 'token: its first 16 characters, 401');
is(code(post('/m/locked', '{"mode": "reject"}', "Basic $token")), 401,
	'token: as Basic, 401');
is(json(http_get('/m/control'))->{mode}, 'normal', 'token: nothing refused applied');
$r = post('/m/locked', '{"mode": "reject"}', "Bearer $token");
ok(code($r) == 200 && json($r)->{mode} eq 'reject', 'token: with it, applied');
$r = http("GET /m/locked HTTP/1.0\nHost: localhost\nAuthorization: Bearer $token\n\n");
is(json($r)->{mode}, 'reject', 'token: GET with it');

$r = http("DELETE /m/control HTTP/1.0\nHost: localhost\n\n");
is(code($r), 405, 'DELETE: 405');
is(code(http("PUT /m/control HTTP/1.0\nHost: localhost\nContent-Length: 17\n\n"
	. '{"mode": "queue"}')), 405, 'PUT: 405');
is(code(post('/m/control', '{"mode": "queue"' . (' ' x 5000) . '}')), 413,
	'a body over 4096 bytes: 413');
is(json(http_get('/m/control'))->{mode}, 'reject', 'a body over 4096 bytes: not applied');
my $fill = '{"mode": "normal"';
$r = post('/m/control', $fill . (' ' x (4096 - length($fill) - 1)) . '}');
ok(code($r) == 200 && json($r)->{mode} eq 'normal', 'a body of 4096 bytes: taken');
$r = http("PATCH /m/control HTTP/1.0\nHost: localhost\nContent-Length: 16\n\n"
	. '{"max_active":3}');
ok(code($r) == 200 && json($r)->{max_active} == 3, 'PATCH: applied');

# mode pass and back, for requests that are no page loads (an image, a
# fetch, with no cookie): through at once after the switch to pass, refused
# at once after the switch back, whichever worker takes them

my (@not_off, @not_refused);
for (1 .. 3) {
	ctl('{"mode": "pass"}');
	push @not_off, grep { wr($_) ne 'OFF' } map { http_get('/m/p.html') } 1 .. 6;
	ctl('{"mode": "normal"}');
	push @not_refused, grep { wr($_) ne 'REFUSED' } map { http_get('/m/p.html') } 1 .. 6;
}
is(scalar @not_off, 0, 'normal -> pass: not page loads go through at once')
	or diag(answers(@not_off));
is(scalar @not_refused, 0, 'pass -> normal: not page loads refused at once')
	or diag(answers(@not_refused));

$c = json(http_get('/m/control'));
$st = json(http_get('/m/status'));
is(join(' ', map { $st->{$_} // 'null' } qw/ mode model rate control_changes /),
	join(' ', map { $c->{$_} // 'null' } qw/ mode model rate changes /),
	'the status shows the same settings and count');
ok(keys %pids >= 2, 'both workers served the newcomers');

###############################################################################

# reloads: the same settings in nginx.conf keep the run-time changes; a new
# max_active in nginx.conf is put in force, the others stay as set

leave_all();
ctl('{"max_active": 5, "model": "random", "rate": "600r/m"}');
$t->write_file_expand('nginx.conf', conf(1, 'two'));
ok(reload_to($t, 'two'), 'reloaded, the same settings');
$c = json(http_get('/m/control'));
is(join(' ', map { $c->{$_} // 'null' } qw/ max_active model rate mode /)
	. ' / ' . $c->{configured}{max_active}, '5 random 600r/m normal / 1',
	'reload: the run-time changes kept');
@v = visitors(6);
ok(kinds_of(@v) eq join(' ', ('ADMITTED') x 5, 'QUEUED')
	&& !grep({ $_->{r} !~ /^X-Model: random\x0d?$/m
	|| $_->{r} !~ /^X-Rate: 600r\/m\x0d?$/m } @v),
	'reload: the new workers steer by them');
leave_all();

$t->write_file_expand('nginx.conf', conf(3, 'three'));
ok(reload_to($t, 'three'), 'reloaded, max_active=3 in nginx.conf');
$c = json(http_get('/m/control'));
is(join(' ', map { $c->{$_} // 'null' } qw/ max_active model rate /)
	. ' / ' . $c->{configured}{max_active}, '3 random 600r/m / 3',
	'reload: nginx.conf\'s new max_active in force, the rest kept');
is(kinds(4), 'ADMITTED ADMITTED ADMITTED QUEUED', 'reload: 3 let in');
my @keeps = $t->read_file('error.log')
	=~ /^.*\[notice\].*waiting room "m" keeps what was set at run time: (.*)$/mg;
ok(@keeps == 2 && $keeps[0] =~ /max_active 5 \(configured: 1\)/
	&& $keeps[0] =~ /model random/ && $keeps[0] =~ /rate 600r\/m/,
	'reload, the same settings: what is kept is logged') or diag(explain(\@keeps));
ok(@keeps == 2 && $keeps[1] =~ /model random/ && $keeps[1] =~ /rate 600r\/m/
	&& $keeps[1] !~ /max_active/, 'reload, max_active changed: what is kept is logged')
	or diag(explain(\@keeps));
leave_all();

$t->write_file_expand('nginx.conf', conf(3, 'four', 'rate=30r/m'));
ok(reload_to($t, 'four'), 'reloaded, rate=30r/m in nginx.conf');
$c = json(http_get('/m/control'));
is(join(' ', map { $c->{$_} // 'null' } qw/ max_active model rate /)
	. ' / ' . ($c->{configured}{rate} // 'null'), '3 random 30r/m / 30r/m',
	'reload: nginx.conf\'s new rate in force, the model kept');

###############################################################################

# a flash sale: 3 inside, 200 in line.  Round after round those inside
# leave, and everyone in line asks, in the order they came; meanwhile
# max_active is raised, the line held (mode queue) and released, a rate set
# and taken away, max_active lowered.  Whoever is let in while someone ahead
# was told to wait in the same round is an inversion, unless that one turns
# out called already when asked again at once.  The status, sampled all
# along, never shows more inside (or called) than max_active.

my $sapi = '/s/_wr/';
my @inside = map { cookie(get('/s/p.html'), 's') } 1 .. 3;
my (@line, @qw);
for (1 .. 200) {
	my $x = get('/s/p.html');
	push @line, cookie($x, 's');
	push @qw, wr($x);
}
ok(!grep({ $_ ne 'QUEUED' } @qw) && !grep({ !defined } @line),
	'flash sale: 200 in line');

# (round => change, max_active it sets; the raise to 25 comes in the middle
# of round 9, after 50 have asked; all are made before round 14 ends, even
# with no rate in the way: 3 + 10 + 10 + 10 + 20 + 4 x 25 + 25 < 200)

my %steps = (
	2 => ['{"max_active": 10}', 10],
	4 => ['{"mode": "queue"}'],
	6 => ['{"mode": "normal"}'],
	7 => ['{"rate": "1200r/m"}'],
	9 => ['{"max_active": 25}', 25, 'mid'],
	12 => ['{"rate": null}'],
	14 => ['{"max_active": 6}', 6],
);
my $max = 3;
my ($held, %done, @rounds, $inversions, $repolled, $over_seen, $over_status);
my ($samples, $held_in, $odd, $wrong_max, $rounds_run) = (0, 0, 0, 0, 0);
my $t0 = time();
for my $round (1 .. 120) {
	last if keys %done == @line || time() - $t0 > 30;
	$rounds_run = $round;
	my $step = $steps{$round};
	($held, $max) = step($step, $held, $max) if $step && !$step->[2];
	api('POST', 'leave', $_, $sapi) for @inside;
	@inside = ();

	my (@got, @told_wait, $asked);
	for my $i (0 .. $#line) {
		next if $done{$i};
		($held, $max) = step($step, $held, $max)
			if $step && $step->[2] && ++$asked == 50;
		my $x = api('GET', 'position', $line[$i], $sapi);
		my $s = json($x)->{state};
		if ($s eq 'queued') {
			push @told_wait, $i;
		} elsif ($s eq 'admitted') {
			$done{$i} = 1;
			push @got, $i;
			push @inside, cookie($x, 's');
			for my $j (@told_wait) {
				$repolled++;
				my $y = api('GET', 'position', $line[$j], $sapi);
				if (json($y)->{state} eq 'admitted') {
					$done{$j} = 1;
					push @got, $j;
					push @inside, cookie($y, 's');
				} else {
					diag("round $round: $i let in while $j waits")
						if ++$inversions <= 5;
				}
			}
			@told_wait = ();
		} else {
			$odd++;
		}
		sample() if $i % 40 == 0;
	}
	sample();
	$over_seen++ if @inside > $max;
	$held_in += @got if $held;
	push @rounds, [@got];
	select undef, undef, undef, 0.05;
}
my $took = time() - $t0;

# a change of the sale: the line held or not, max_active, after it

sub step {
	my ($step, $held, $max) = @_;
	my $ans = sctl($step->[0]);
	$max = $step->[1] if defined $step->[1];
	$wrong_max++ if ($ans->{max_active} // 0) != $max;
	$held = $step->[0] =~ /queue/ ? 1 : $step->[0] =~ /normal/ ? 0 : $held;
	return ($held, $max);
}

sub sample {
	my $s = json(http_get('/s/status'));
	$samples++;
	$wrong_max++ if $s->{max_sessions} != $max;
	$over_status++ if $s->{active_sessions} > $s->{max_sessions}
		|| $s->{active_sessions} + $s->{called_unclaimed} > $s->{max_sessions};
}

my @order = map { @$_ } @rounds;
note(sprintf('flash sale: %d of 200 in, %d rounds, %.1f s, %d status samples, '
	. '%d asked again', scalar @order, $rounds_run, $took, $samples, $repolled // 0));
is(join(' ', sort { $a <=> $b } @order), join(' ', 0 .. 199), 'flash sale: everyone in');
is($inversions // 0, 0, 'flash sale: 0 FIFO inversions');
my $backwards = grep { @{$rounds[$_ - 1]} && @{$rounds[$_]}
	&& max(@{$rounds[$_ - 1]}) > min(@{$rounds[$_]}) } 1 .. $#rounds;
is($backwards, 0, 'flash sale: each round after the one before, in line order');
is($over_seen // 0, 0, 'flash sale: never more let in than max_active');
is($over_status // 0, 0, 'flash sale: status, never more inside or called than max_active');
is($wrong_max, 0, 'flash sale: the status shows the max_active set');
is($held_in, 0, 'flash sale: nobody let in while the line was held');
is($odd, 0, 'flash sale: nobody lost a place');
my $sc = json(http_get('/s/control'));
is(join(' ', map { $sc->{$_} // 'null' } qw/ max_active mode rate changes /),
	'6 normal null 7', 'flash sale: the settings, 7 changes');
my @lines = $t->read_file('error.log') =~ /waiting room "s" changed at run time/g;
is(scalar @lines, 7, 'flash sale: 7 changes logged');

###############################################################################

sub conf {
	my ($max, $gen, $more) = @_;
	$more //= '';
	return <<"EOF";

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

http {
    %%TEST_GLOBALS_HTTP%%

    waiting_room_secret secret.key;
    waiting_room_zone zone=m:1m max_active=$max $more;
    waiting_room_zone zone=s:1m max_active=3;

    server {
        listen       127.0.0.1:8080 reuseport;
        server_name  localhost;

        add_header X-WR \$waiting_room_status always;
        add_header X-Pid \$pid always;
        add_header X-Mode \$waiting_room_mode always;
        add_header X-Model \$waiting_room_model always;
        add_header X-Rate \$waiting_room_rate always;
        add_header X-Phase \$waiting_room_phase always;

        location /m/ { waiting_room m api=/m/_wr/; }
        location /m/_wr/ { waiting_room_api m; }
        location = /m/status { waiting_room_status m; }
        location = /m/control {
            allow 127.0.0.1;
            deny all;
            waiting_room_control m;
        }
        location = /m/locked {
            waiting_room_control m token=control.token;
        }

        location /s/ { waiting_room s api=/s/_wr/; }
        location /s/_wr/ { waiting_room_api s; }
        location = /s/status { waiting_room_status s; }
        location = /s/control { waiting_room_control s; }

        location = /gen {
            return 200 "$gen";
        }
    }
}

EOF
}

sub utc {
	return strftime('%Y-%m-%dT%H:%M:%SZ', gmtime(int(shift)));
}

sub post {
	my ($uri, $body, $auth) = @_;
	my $a = defined $auth ? "Authorization: $auth\n" : '';
	return http("POST $uri HTTP/1.0\nHost: localhost\n$a"
		. "Content-Type: application/json\n"
		. 'Content-Length: ' . length($body) . "\n\n$body");
}

# a change that must be taken: the answer's JSON

sub ctl {
	my ($body, $uri) = @_;
	my $r = post($uri // '/m/control', $body);
	diag("control $body: " . ($r // 'no answer')) unless code($r) == 200;
	return json($r);
}

sub sctl {
	return ctl(shift, '/s/control');
}

# how many changes error.log (given) tells of

sub changes_logged {
	my @l = shift =~ /changed at run time/g;
	return scalar @l;
}

# $n newcomers of room m, each on connections of its own: their cookie,
# $waiting_room_status, answer; all kept to leave later

sub visitors {
	my ($n) = @_;
	my @v;
	for (1 .. $n) {
		my $r = get('/m/p.html');
		my $v = { c => cookie($r, 'm'), wr => wr($r), r => $r };
		$pids{$1} = 1 if $r =~ /^X-Pid: (\d+)/m;
		push @held, $v->{c} if defined $v->{c};
		push @v, $v;
	}
	return @v;
}

# $waiting_room_status and the worker of each answer given

sub answers {
	return join ', ', map { code($_) . ' ' . wr($_) . ' by '
		. ($_ =~ /^X-Pid: (\d+)/m ? $1 : '?') } @_;
}

# the first of @line is inside; one at a time, the one inside leaves and
# the rest ask (the last comer first) until one is let in: the order, as
# indexes of the others

sub serve_m {
	my ($in, @line) = @_;
	my (@order, %done);
	for (1 .. @line) {
		api('POST', 'leave', $in, $mapi);
		my $got;
		for (1 .. 20) {
			for my $i (reverse 0 .. $#line) {
				next if $done{$i};
				my $r = api('GET', 'position', $line[$i], $mapi);
				next unless json($r)->{state} eq 'admitted';
				($got, $in) = ($i, cookie($r, 'm'));
				last;
			}
			last if defined $got;
			select undef, undef, undef, 0.05;
		}
		last unless defined $got;
		$done{$got} = 1;
		push @order, $got;
	}
	api('POST', 'leave', $in, $mapi);
	return @order;
}

sub kinds_of {
	return join ' ', map { $_->{wr} } @_;
}

sub kinds {
	return kinds_of(visitors(shift));
}

# a visitor of room m asks its place: the state; a session given is kept to
# leave later

sub poll {
	my ($c) = @_;
	my $r = api('GET', 'position', $c, $mapi);
	my $s = json($r)->{state};
	push @held, cookie($r, 'm') if $s eq 'admitted' && cookie($r, 'm');
	return $s;
}

# everyone held leaves: sessions end, tickets leave the line

sub leave_all {
	api('POST', 'leave', $_, $mapi) for @held;
	@held = ();
}

sub max { my $m = shift; $m = $_ > $m ? $_ : $m for @_; return $m }
sub min { my $m = shift; $m = $_ < $m ? $_ : $m for @_; return $m }

###############################################################################
