#!/usr/bin/perl

# Tests for the pages a visitor sees: the branded example (nginx-conf/
# branded.conf) as shipped, languages from Accept-Language, the operator's
# texts and templates, the reload a visitor can stop, the "cookies are needed"
# page, a queued form, the full, closed and over pages, and what nginx -t
# refuses.

###############################################################################

use warnings;
use strict;

use Test::More;

use FindBin;
use lib "$FindBin::Bin/lib";
use Test::Nginx qw/ :DEFAULT http /;
use Test::Nginx::WaitingRoom qw/ example req get first code body wr cookie conf_test /;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

my $t = Test::Nginx->new()->has(qw/http proxy/)->plan(52);
my $d = $t->testdir();

$t->write_file('waiting_room.key', '0123456789abcdef' x 4 . "\n");
mkdir "$d/pages";
mkdir "$d/html";
mkdir "$d/html/brand";
$t->write_file('pages/sold-out.html',
	slurp("$FindBin::Bin/../nginx-conf/pages/sold-out.html"));
$t->write_file('html/brand/logo.svg', "<svg/>\n");
chmod 0755, $d if $> == 0;

# the texts the pages must show, from the module's own catalogues

my %text = map { $_ => texts($_) } qw/ en de fr /;

# what nginx -t refuses

$t->write_file('broken.html', "<p>\n{% if position %}\n<b>\n");
$t->write_file('typo.html', "<p>\n\n{{ positon }}</p>\n");

my @bad = (
	['waiting_room_page closed broken.html;',
		qr/waiting_room_page "\Q$d\E\/broken.html": syntax error: .* in \Q$d\E\/broken.html:\d/],
	['waiting_room_page over typo.html;',
		qr/waiting_room_page "\Q$d\E\/typo.html": undefined value in \Q$d\E\/typo.html:3 in /],
	['waiting_room_page nowhere typo.html;', qr/invalid parameter "nowhere"/],
	['waiting_room_page closed over pages/sold-out.html; '
		. 'waiting_room_page closed pages/sold-out.html;',
		qr/duplicate waiting_room_page for "closed"/],
	['waiting_room_colors accent=#ffcc00;',
		qr/accent colour #ffcc00 has a contrast of 1\.\d:1 with the page's white, and text needs at least 4\.5:1/],
	['waiting_room_colors accent=red;', qr/invalid colour "accent=red"/],
	['waiting_room_language en klingon;',
		qr/unknown language "klingon", it must be "auto" or one of en, de, fr/],
	['waiting_room_text nonsense "x";', qr/unknown text "nonsense"/],
	['waiting_room_text number_in_line "Nummer";',
		qr/text "number_in_line" must contain "\{n\}"/],
	['waiting_room_text busy "x" xx;', qr/unknown language "xx"/],
	['waiting_room_title "";', qr/"waiting_room_title" must not be empty/],
);
for my $case (@bad) {
	my ($directive, $want) = @$case;
	my ($ok, $out) = conf_test($t, "waiting_room_zone zone=z:1m;\n"
		. "waiting_room_secret waiting_room.key;\n"
		. "server { listen 127.0.0.1:%%PORT_8080%%;\n"
		. "location / { waiting_room z; $directive }\n"
		. "location /_wr/ { waiting_room_api z; } }");
	ok(!$ok && $out =~ $want, "nginx -t: $directive") or diag($out);
}

###############################################################################

# the example as shipped, one place inside; a closed room and a tiny one

my $example = example('branded.conf');
$example =~ s/max_active=500/max_active=1/;
$example =~ s/\n\}\s*\z/\n$_\n}\n/ for <<'EOF';
    waiting_room_zone zone=shut:1m max_active=1 mode=reject;
    waiting_room_zone zone=gone:1m max_active=1 queue_timeout=2s claim_window=1s;
    waiting_room_zone zone=tiny:32k max_active=1;
    waiting_room_zone zone=past:1m max_active=1
                      start=2020-01-01T00:00:00Z end=2020-01-02T00:00:00Z;

    add_header X-WR $waiting_room_status always;

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        location / { return 200 "origin $uri\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT_8082%%;
        waiting_room_language de en;
        waiting_room_page closed pages/sold-out.html;
        location /shut/ { waiting_room shut api=/shut/_wr/; }
        location /shut/_wr/ { waiting_room_api shut; }
        location /tiny/ { waiting_room tiny api=/tiny/_wr/; }
        location /tiny/_wr/ { waiting_room_api tiny; }
        location /gone/ { waiting_room gone api=/gone/_wr/; }
        location /gone/_wr/ { waiting_room_api gone; }
        location /past/ { waiting_room past api=/past/_wr/; }
        location /past/_wr/ { waiting_room_api past; }
    }
EOF
$t->write_file_expand('nginx.conf', $example);
$t->run();

my $in = get('/shop');
ok(code($in) == 200 && body($in) eq "origin /shop\n", 'the first visitor is in');

# the queue page, branded, in English by default

my $r = get('/shop');
my $ticket = cookie($r, 'shop');
my $b = body($r);
ok(wr($r) eq 'QUEUED' && $b =~ /<html lang="en">/, 'queued: the page, English');
like($b, qr!<title>\Q$text{en}{title_queue}\E – Acme Spring Sale</title>!,
	'queued: title and brand in the title');
like($b, qr!<p class="brand">Acme Spring Sale</p>!, 'queued: the brand');
like($b, qr!<img class="logo" src="[^"]*logo\.svg" alt="Acme">!, 'queued: logo');
like($b, qr!--acc:#b0125b;.*--bg:#fdf2f6|--bg:#fdf2f6;.*--acc:#b0125b!s,
	'queued: colours');
like($b, qr!<p class="msg">Everything is 30% off until Sunday\.</p>!,
	'queued: message');
unlike($b =~ s/<script>.*<\/script>//sr, qr/>[^<]*\bshop\b/i,
	'queued: the room\'s name is not shown');
like($r, qr/^Vary: Accept, Accept-Language\s*$/m, 'queued: Vary');
like($r, qr/^Content-Language: en\s*$/m, 'queued: Content-Language');
my ($refresh) = $r =~ /^Refresh: (\d+)\s*$/m;
my ($retry) = $r =~ /^Retry-After: (\d+)\s*$/m;
ok($refresh && $refresh == $retry, 'queued: Refresh, as Retry-After');
like($b, qr/\Q${\ fill($text{en}{reload_notice}, $refresh) }\E.*href="\/shop\?wr_reload=off"/s,
	'queued: the reload is announced, with a way to stop it');
my $logo = http_get('/brand/logo.svg');
ok(code($logo) == 200 && $logo =~ m!^Content-Type: image/svg\+xml!m,
	'the logo is outside the room, as an image');

# other languages

$r = http(req('/shop', $ticket, undef, 'de-CH, de;q=0.9, en;q=0.5'));
$b = body($r);
ok($b =~ /<html lang="de">/ && $r =~ /^Content-Language: de\s*$/m,
	'German: lang');
ok(index($b, $text{de}{in_line}) >= 0 && index($b, $text{de}{lead}) >= 0,
	'German: the texts');
ok(index($b, 'Großer Andrang!') >= 0 && index($b, $text{de}{busy}) < 0,
	'German: the operator\'s text');
$r = http(req('/shop', $ticket, undef, 'sv, fr;q=0.7, en;q=0.6'));
$b = body($r);
ok($b =~ /<html lang="fr">/ && index($b, $text{fr}{in_line}) >= 0
	&& index($b, $text{fr}{busy}) >= 0, 'French, and its own heading');
$r = http(req('/shop', $ticket, undef, 'sv'));
like(body($r), qr/<html lang="en">/, 'no language offered: English');

# stopping the reload, and starting it again

$r = http(req('/shop?wr_reload=off', $ticket));
ok(code($r) == 303 && $r =~ m!^Location: /shop\s*$!m
	&& $r =~ /^Set-Cookie: wr_reload=off; Path=\/;/m, 'reload off: back, with a cookie');
$r = http(req('/shop', "$ticket; wr_reload=off"));
$b = body($r);
ok(wr($r) eq 'QUEUED' && $r !~ /^Refresh:/m, 'reload off: no Refresh');
ok(index($b, $text{en}{reload_stopped}) >= 0
	&& $b =~ m!href="/shop">\Q$text{en}{check_now}\E!
	&& $b =~ m!href="/shop\?wr_reload=on">!, 'reload off: said, with a way back');
$r = http(req('/shop?wr_reload=on', "$ticket; wr_reload=off"));
ok(code($r) == 303 && $r =~ /^Set-Cookie: wr_reload=; Path=\/; Max-Age=0/m,
	'reload on: the cookie cleared');

# a first contact: the reload goes to the check, which needs the cookie back

$r = first('/shop?a=1');
my $arrival = cookie($r, 'shop');
like($r, qr!^Refresh: \d+; url=/shop\?a=1&wr_check=1\s*$!m,
	'arrival: the reload checks the cookie');
$r = http(req('/shop?a=1&wr_check=1', $arrival));
ok(code($r) == 303 && $r =~ m!^Location: /shop\?a=1\s*$!m,
	'check: with the cookie, back to the page');
$r = http(req('/shop?a=1&wr_check=1', undef, undef));
$b = body($r);
ok(index($b, $text{en}{cookies_heading}) >= 0
	&& $b =~ m!href="/shop\?a=1">\Q$text{en}{try_again}\E!
	&& $r !~ /^Refresh:/m, 'check: without it, the cookies page');
$r = http(req('/shop?wr_check=1', undef, undef, 'de'));
ok(index(body($r), $text{de}{cookies_heading}) >= 0, 'check: in German');

# a form sent while queued

$r = http("POST /shop/order HTTP/1.0\nHost: localhost\nCookie: $ticket\n"
	. "Referer: http://localhost/shop/cart?x=1\nContent-Type: "
	. "application/x-www-form-urlencoded\nContent-Length: 7\n"
	. "Sec-Fetch-Mode: navigate\nSec-Fetch-Dest: document\n\nitem=42");
$b = body($r);
ok(wr($r) eq 'QUEUED' && index($b, $text{en}{form_not_sent}) >= 0,
	'form: the page says it was not sent');
like($b, qr!<a href="/shop/cart\?x=1">\Q$text{en}{back_to_form}\E</a>!,
	'form: a way back to it');
like($r, qr!^Refresh: \d+; url=/shop/cart\?x=1\s*$!m,
	'form: the reload goes back to it, without the body');
$r = http("POST /shop/order HTTP/1.0\nHost: localhost\nCookie: $ticket\n"
	. "Referer: http://evil.example/shop/cart\nContent-Length: 0\n"
	. "Sec-Fetch-Mode: navigate\nSec-Fetch-Dest: document\n\n");
ok(index(body($r), $text{en}{form_not_sent}) >= 0 && $r !~ /url=/
	&& body($r) !~ /evil/, 'form: another site\'s page is not gone back to');
$r = http("POST /shop/order HTTP/1.0\nHost: localhost\nCookie: $ticket\n"
	. "Referer: http://localhost/_wr/position\nContent-Length: 0\n"
	. "Sec-Fetch-Mode: navigate\nSec-Fetch-Dest: document\n\n");
ok(index(body($r), $text{en}{form_not_sent}) >= 0 && $r !~ /url=/
	&& body($r) !~ /_wr\/position/, 'form: the room\'s own API is not gone back to');

# the closed page: the site's own, in two languages, with the look

$r = http(req('/shut/p', undef, undef, 'de'), PeerAddr => addr(8082));
ok(code($r) == 503 && wr($r) eq 'CLOSED' && body($r) =~ /<h1>Ausverkauft<\/h1>/
	&& body($r) =~ /--acc:/, 'closed: the site\'s page, German');
$r = http(req('/shut/p', undef, undef, 'en'), PeerAddr => addr(8082));
ok(body($r) =~ /<h1>Sold out<\/h1>/ && body($r) =~ /<html lang="en">/,
	'closed: English');
$r = http(req('/shut/p', undef, undef, 'fr'), PeerAddr => addr(8082));
like(body($r), qr/<html lang="de">/, 'closed: a language not offered, the first');
like($r, qr/^Vary: Accept, Accept-Language\s*$/m, 'closed: Vary');

# the event is over

$r = http(req('/past/p', undef, undef, 'en'), PeerAddr => addr(8082));
ok(code($r) == 503 && wr($r) eq 'OVER'
	&& index(body($r), $text{en}{over_heading}) >= 0, 'over: English');
$r = http(req('/past/p', undef, undef, 'de'), PeerAddr => addr(8082));
ok(index(body($r), $text{de}{over_heading}) >= 0, 'over: German');

# a ticket the line no longer holds (its page was away past queue_timeout): the
# visitor goes to the back, and the page says why

my $gone = sub { http(req('/gone/p', $_[0], undef, $_[1]), PeerAddr => addr(8082)) };
my $g = cookie($gone->(), 'gone');
$gone->($g);
$g = cookie($gone->(), 'gone');
$r = $gone->($g, 'en');
my $old = cookie($r, 'gone') // $g;
ok(wr($r) eq 'QUEUED' && lost_note($r) eq '', 'lost: in line, nothing lost yet');
select undef, undef, undef, 4;
$r = $gone->($old, 'en');
ok(wr($r) eq 'ARRIVED' && lost_note($r) eq $text{en}{place_lost_after},
	'lost: the page says the earlier place was lost');

# the line is full

my $tiny = sub { http(req('/tiny/p', $_[0], undef, $_[1]), PeerAddr => addr(8082)) };
my $n = 0;
while ($n < 5000) {
	my $rr = $tiny->(undef, 'en');
	my $c = cookie($rr, 'tiny');
	last if code($rr) == 503;
	$tiny->($c, 'en') if $c;
	$n++;
}
$r = $tiny->(undef, 'en');
ok(code($r) == 503 && wr($r) eq 'REJECTED'
	&& index(body($r), $text{en}{full_heading}) >= 0
	&& $r !~ /^Refresh:/m, 'full: English, no automatic reload');
$r = $tiny->(undef, 'de');
ok(index(body($r), $text{de}{full_heading}) >= 0, 'full: German');

###############################################################################

sub texts {
	my ($lang) = @_;
	require JSON::PP;
	# bytes, as the answers are compared as bytes
	my $j = JSON::PP->new->decode(
		slurp("$FindBin::Bin/../src/pages/texts/$lang.json"));
	return { map { $_ => ref $j->{$_} ? $j->{$_}{other} : $j->{$_} }
		keys %$j };
}

sub fill {
	my ($text, $n) = @_;
	$text =~ s/\{n\}/$n/;
	return $text;
}

sub lost_note {
	my ($r) = @_;
	return body($r) =~ m!<p class="note" id="lost" role="status">(.*?)</p>!s
		? $1 : 'no note';
}

sub addr {
	return '127.0.0.1:' . port(shift);
}

sub slurp {
	my ($file) = @_;
	open my $fh, '<', $file or die "Can't open $file: $!";
	local $/;
	return scalar <$fh>;
}

###############################################################################
