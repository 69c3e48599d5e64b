#!/usr/bin/perl
# Emit a JSON list of test cases for tests/test_storable.py:
#   {name, freeze: hex, nfreeze: hex, perl: <Perl's own description of thaw()>}
# Each value is frozen with Storable's freeze and nfreeze, then thawed by Perl
# and described by StorableDescribe, so the Python reader is checked against
# what Perl itself reads back, not against our idea of the format.
use strict;
use warnings;
no warnings 'once';
use FindBin;
use lib $FindBin::Bin;
use Storable qw(freeze nfreeze thaw);
use Scalar::Util qw(weaken);
use Hash::Util qw(lock_keys);
use StorableDescribe qw(describe_root to_json);

$Storable::Deparse = 1;
# Record the source Storable hands to eval, so the describer can show the
# stored text (re-deparsing the compiled sub gives a slightly different text).
$Storable::Eval = sub {
    my ($src) = @_;
    my $code = eval $src or die $@;
    (my $text = $src) =~ s/^sub //;
    $StorableDescribe::CODE_SRC{ Scalar::Util::refaddr($code) } = $text;
    return $code;
};

my @cases;
sub case { my ($name, $value) = @_; push @cases, [ $name, $value ]; }

# integers of every width (BYTE, NETINT, INTEGER, large ones as strings in nfreeze)
for my $n (0, 1, -1, 127, -128, 128, -129, 255, 256, 32767, -32768, 65536,
           2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**32, -2**40, 9223372036854775807,
           -9223372036854775807 - 1, 18446744073709551615) {
    case("int $n", [$n]);
}
# doubles
for my $x (1.5, -0.25, 0.1, 1e300, -1e-300, 3.141592653589793, 1e20, 9**9**9, -9**9**9) {
    case("double $x", [$x]);
}
# strings
case('empty string', [""]);
case('numeric-looking strings', [ "0123", "12", "-3", "1.5", "1e5", " 1", "1.50" ]);
case('ascii', [ "hello world" ]);
case('utf8 flagged', [ "caf\x{e9} \x{263a}" ]);
{ my $s = "caf\x{e9} \x{263a}"; utf8::encode($s); case('utf8 bytes unflagged', [$s]); }
case('latin1 unflagged', [ "caf\xe9" ]);
case('binary', [ "\x00\xff\x80\x01" ]);
case('long string (LSCALAR)', [ "x" x 300 ]);
case('long utf8 string (LUTF8STR)', [ "\x{263a}" x 200 ]);
case('root scalar', \ "just a scalar");
case('root long scalar', \ ("y" x 1000));
# undef, booleans, immortals
case('undef in array', [ undef, 1, undef ]);
case('array holes (SV_UNDEF)', do { my @a; $a[3] = 1; \@a });
case('ref to undef (SV_UNDEF)', [ \undef ]);
case('SVUNDEF_ELEM', sub { \@_ }->(undef, 1));
case('booleans', [ !!1, !!0 ]);
case('immortal yes/no refs', [ \!!1, \!!0 ]);
# hashes
case('empty hash', {});
case('empty array', []);
case('simple hash', { a => 1, b => "two", c => [ 1, 2, 3 ], d => { e => undef } });
case('utf8 keys (FLAG_HASH)', { "\x{263a}" => 1, "caf\x{e9}" => 2, plain => 3 });
{ use utf8; case('was-utf8 key', { "é" => 1, "x" => 2 }); }
case('latin1 key', { "caf\xe9" => 1 });
case('long key', { ("k" x 300) => 1 });
{ my %r = (a => 1, b => 2); lock_keys(%r, qw(a b c)); delete $r{b}; case('restricted hash', \%r); }
# references
case('ref to scalar', [ \"x" ]);
case('ref to ref', [ \\"x" ]);
case('ref to ref to array', \\[1]);
{ my $s = "shared"; case('shared scalar ref', [ \$s, \$s ]); }
{ my $a = [1]; case('shared array', { x => $a, y => $a, z => [$a] }); }
{ my $h = { n => 1 }; $h->{self} = $h; case('cyclic hash', $h); }
{ my $a = []; push @$a, $a, \$a; case('cyclic array and ref to ref', $a); }
{ my $x; $x = \$x; case('self-referencing scalar', [$x]); }
{ my $h = { v => 1 }; my $a = [ $h, $h ]; weaken($a->[1]); case('weak ref', $a); }
# blessed
case('blessed hash', bless({ a => 1 }, 'My::Class'));
case('blessed array in hash', { o => bless([ 1, 2 ], 'My::List') });
case('blessed scalar', bless(\ (my $bs = "val"), 'My::Scalar'));
case('IX_BLESS', [ bless({}, 'Same'), bless([], 'Same'), bless({}, 'Other'), bless({}, 'Same') ]);
case('long class name', [ bless({ x => 1 }, 'A' x 200), bless([], 'A' x 200) ]);
case('blessed ref to ref', bless(\ (my $rr = [1]), 'My::RefRef'));
{ my @many = map { bless({}, "Class$_") } 0 .. 140; push @many, bless({}, 'Class140'); case('class index > 127', \@many); }
{ my $o = bless({ v => 1 }, 'StorableTest::Overloaded'); case('overloaded', [ $o, $o ]);
  my $a = [ $o, $o ]; weaken($a->[1]); case('weak overloaded', $a); }
# hooks
case('hook hash', bless({ parts => [ "frozen", [ 1, 2 ], { k => 'v' } ] }, 'StorableTest::Hooked'));
case('hook array', bless([ "frz" ], 'StorableTest::Hooked'));
case('hook scalar', bless(\ (my $hs = "s"), 'StorableTest::Hooked'));
case('hook twice (IDX classname)', [ map { bless({ parts => ["p$_"] }, 'StorableTest::Hooked') } 1 .. 3 ]);
case('hook long frozen', bless({ parts => [ "z" x 400 ] }, 'StorableTest::Hooked'));
{ my $s = "target"; my $h = { sh => 1 };
  case('hook refs to seen values', [ $h, \$s, bless({ parts => [ "f", $h, \$s ] }, 'StorableTest::Hooked') ]); }
{ no strict 'refs'; my $long = 'StorableTest::Hooked::' . ('L' x 150);
  @{"${long}::ISA"} = ('StorableTest::Hooked');
  case('hook long class name', bless({ parts => ["q"] }, $long)); }
# tied
{ my %h; tie %h, 'StorableTest::Tie', x => 1; case('tied hash', \%h); case('ref to tied hash', [ \%h ]);
  case('tied element (TIED_KEY)', [ \$h{k} ]); }
{ my @a; tie @a, 'StorableTest::Tie', 1, 2; case('tied array', [ \@a ]); case('tied element (TIED_IDX)', [ \$a[2] ]); }
{ my $s; tie $s, 'StorableTest::Tie', "v"; case('tied scalar', [ \$s ]); }
# vstrings, regexps, code
case('vstring', [ \v1.2.3 ]);
case('vstring root', \v5.36.0);
{ my $lv = eval "v" . join('.', 1 .. 100); case('long vstring (LVSTRING)', [ \$lv ]); }
case('regexp', [ qr/ab+c/i, qr/^x$/ms ]);
{ use utf8; case('utf8 regexp', [ qr/é☺/ ]); }
case('long regexp', [ qr/${\ ('a' x 300)}/ ]);
case('blessed regexp', [ bless(qr/z/, 'My::Re') ]);
case('code', [ sub { 42 } ]);
case('session-like', {
    _SESSION_ID => 'd41d8cd98f00b204e9800998ecf8427e', _SESSION_CTIME => 1700000000,
    _SESSION_ATIME => 1700000123, _SESSION_REMOTE_ADDR => '10.0.0.1',
    user => { id => 42, name => "J\x{f6}rg", roles => [qw(admin editor)], score => 98.5 },
    cart => [ map { { sku => "SKU$_", qty => $_, price => 9.99 } } 1 .. 5 ],
    flags => { beta => 1, dark => 0 }, csrf => 'a' x 40,
});

my @out;
for my $c (@cases) {
    my ($name, $value) = @$c;
    my %entry = (name => $name);
    for my $kind ('freeze', 'nfreeze') {
        my $blob = $kind eq 'freeze' ? freeze($value) : nfreeze($value);
        %StorableDescribe::HOOKED = ();
        my $thawed = thaw($blob);
        $entry{$kind} = unpack('H*', $blob);
        $entry{"perl_$kind"} = describe_root($thawed);
    }
    push @out, \%entry;
}
print to_json(\@out);
